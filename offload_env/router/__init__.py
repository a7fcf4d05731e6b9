"""The edge router: loads an exported policy artifact and decides, per request, where inference runs.

Light by design: numpy and this package's light core only (no torch, SB3,
numba, pandas or matplotlib is imported here or by what it imports), and
no pickle is ever loaded (``np.load(..., allow_pickle=False)``).
"""

from .artifact import FORMAT, FORMAT_VERSION, Artifact, ArtifactError, read_artifact, write_artifact
from .policy import Policy, PolicyError, build_policy
from .router import Decision, RequestError, Router

__all__ = ["Router", "Decision", "RequestError", "Artifact", "ArtifactError", "Policy", "PolicyError",
           "FORMAT", "FORMAT_VERSION", "read_artifact", "write_artifact", "build_policy"]
