"""The CAM authors' Caffe models without Caffe (needs the optional ``protobuf``: ``pip install 'wsol-bench[caffe]'``).

* :func:`load_caffe` ``(prototxt, caffemodel) -> CaffeNet``: the TEST-phase network with Caffe's
  semantics (:mod:`~bench.models.caffe.net`); ``forward`` returns the class scores.
* :func:`convert_caffe` / :func:`load_converted`: ``bench convert caffe DEPLOY CAFFEMODEL --out
  NET.pt`` and its reader (``torch.load(..., weights_only=True)``).
* :func:`caffe_bench_model` / :func:`build_caffe_model`: the harness's ``BenchModel`` view, used by
  ``--model caffe:NET.pt`` and ``--model DEPLOY.prototxt --weights X.caffemodel``.
* :mod:`~bench.models.caffe.tencrop`: the release's ten-crop heat maps.

Modules: ``schema`` (the minimal caffe.proto), ``io`` (files), ``arch`` (plain architecture),
``net`` (the module), ``model`` (API), ``tencrop``.
"""

from bench.models.caffe.arch import net_to_arch, pool_output_size
from bench.models.caffe.io import CaffeFormatError, read_caffemodel, read_prototxt
from bench.models.caffe.model import (
    CAFFE_MEAN_BGR,
    CaffeCamNet,
    build_caffe_model,
    caffe_bench_model,
    convert_caffe,
    find_cam_head,
    is_caffe_model_string,
    load_caffe,
    load_converted,
)
from bench.models.caffe.net import CaffeNet

__all__ = [
    "CAFFE_MEAN_BGR",
    "CaffeCamNet",
    "CaffeFormatError",
    "CaffeNet",
    "build_caffe_model",
    "caffe_bench_model",
    "convert_caffe",
    "find_cam_head",
    "is_caffe_model_string",
    "load_caffe",
    "load_converted",
    "net_to_arch",
    "pool_output_size",
    "read_caffemodel",
    "read_prototxt",
]
