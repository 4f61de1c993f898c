"""The ONNX Runtime backend: one inference session per process.

The one place ml_app imports onnxruntime; ml_app.core.model and ml_app.core.conversion import
this module only when they need it.
"""

from __future__ import annotations

import os

from ml_app.core.config import disable_onnx_telemetry

# Before the import below (see the function for why).
disable_onnx_telemetry()

import numpy as np  # noqa: E402 - after disable_onnx_telemetry()
import onnxruntime  # noqa: E402 - after disable_onnx_telemetry()

RUNTIME_VERSION = onnxruntime.__version__


class OnnxBackend:
    """An ONNX model (as converted by skl2onnx, zipmap off) run by ONNX Runtime.

    ONNX Runtime does not promise that a session survives fork(). Gunicorn preloads the app in
    its master and forks the workers, so a session belongs to the process that made it: each
    worker makes its own on first use (a few milliseconds), and one made in the master (for the
    parity check at load) is never run in a child.
    """

    name = "onnx"

    def __init__(self, model: bytes, input_dtype: str) -> None:
        self.model = model
        self.input_dtype = np.dtype(input_dtype)
        self._session: onnxruntime.InferenceSession | None = None
        self._owner_pid: int | None = None
        session = self._session_here()  # a broken model fails here, at load, not per request
        self._input = session.get_inputs()[0].name
        # skl2onnx's outputs: classifiers (label, probabilities), regressors (variable).
        self._outputs = [output.name for output in session.get_outputs()]
        # Run only the nodes the requested output needs: asked for probabilities, a classifier's
        # graph skips its label branch (argmax, class lookup, casts).
        self._run_options = onnxruntime.RunOptions()
        self._run_options.only_execute_path_to_fetches = True

    def labels(self, matrix: np.ndarray) -> np.ndarray:
        """The graph's label output."""
        return self._run(0, matrix)

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """The graph's probability output, widened to float64 like scikit-learn's."""
        return self._run(1, matrix).astype(np.float64, copy=False)

    def values(self, matrix: np.ndarray) -> np.ndarray:
        """The graph's regression output, as float64, 1-D for a single target."""
        values = self._run(0, matrix).astype(np.float64, copy=False)
        return values.ravel() if values.ndim == 2 and values.shape[1] == 1 else values

    def _run(self, output: int, matrix: np.ndarray) -> np.ndarray:
        feed = {self._input: matrix.astype(self.input_dtype, copy=False)}
        return self._session_here().run([self._outputs[output]], feed, self._run_options)[0]

    def _session_here(self) -> onnxruntime.InferenceSession:
        pid = os.getpid()
        if self._owner_pid != pid:
            self._session = new_session(self.model)
            self._owner_pid = pid
        return self._session


def new_session(model: bytes) -> onnxruntime.InferenceSession:
    """A CPU session that keeps to one thread: the server's parallelism is its worker processes."""
    options = onnxruntime.SessionOptions()
    # Thread pools would oversubscribe the cores Gunicorn's workers already fill, and threads
    # do not survive fork; with one thread each, ONNX Runtime starts none.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
