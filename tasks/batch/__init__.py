"""Batch scoring: a registered version scores a CSV or Parquet file, chunk by chunk, on the Dask cluster.

``files`` plans chunks of the input, reads one chunk, writes scored parts and
merges them in order into the output (temporary name, then rename);
``scoring`` loads the version's runtime (the model server's own, so batch and
online predictions agree), scores a chunk, and records the job in lineage.
The ``batch-predict`` flow (:mod:`flows.batch`) and ``mlops predict`` wire them.

Example:
    >>> from tasks.batch.files import file_format
    >>> file_format("scores.parquet")
    'parquet'
"""
