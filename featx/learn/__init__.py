"""Learning on features: ``classify`` (scikit-learn estimators and pipelines on arrays), ``fit``
(stores -> run folders), ``predict`` (a fitted model on new images)."""
