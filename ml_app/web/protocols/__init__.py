"""Wire protocols other servers speak (Open Inference V2, KServe V1, MLflow), over the same core."""
