"""Running featx as batch jobs: SLURM array submission (:mod:`.slurm`), the state of a sharded
extraction read from its files (:mod:`.status`), and study pipelines (:mod:`.pipeline`).

featx schedules nothing itself: SLURM (``sbatch``), torchrun and dask do; this package writes
their inputs and reads back what the tasks left in the store files.
"""
