"""HTTP scoring service (FastAPI) with micro-batching, and the offline web page it serves at ``/``.

Needs the ``serve`` extra (fastapi, uvicorn, python-multipart). See docs/serving.md.
"""
from .app import create_app
from .batching import ImageScore, MicroBatcher
from .server import is_loopback, run_server
from .uploads import RequestError, UploadLimits
from .variants import ModelVariants, share_identical_tensors

__all__ = ["create_app", "ImageScore", "MicroBatcher", "is_loopback", "run_server", "RequestError",
           "UploadLimits", "ModelVariants", "share_identical_tensors"]
