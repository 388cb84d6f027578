"""The runtimes shared by extraction, prediction and fine-tuning: ``loader`` (batches of decoded
images), ``base`` (the :class:`~featx.engine.base.Embedder` interface), ``embed`` (PyTorch: device,
precision, memory format), ``openvino`` (the OpenVINO runtime and its model cache), ``export``
(PyTorch to OpenVINO), ``runtime`` (which runtime and precision, and the embedder built in it),
``memory`` (embedding images in memory), ``cpu`` (the CPU's cores and bf16)."""
