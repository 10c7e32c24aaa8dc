"""A minimal Caffe schema, built in code: the messages of ``caffe.proto`` these files use.

Caffe's ``.prototxt`` (protobuf text format) and ``.caffemodel`` (protobuf binary) files are
``caffe.NetParameter`` messages. Rather than shipping Caffe's generated ``caffe_pb2`` we declare
the part of ``caffe.proto`` (BVLC/caffe, ``src/caffe/proto/caffe.proto``) that the CAM release's
networks and their train/val files use, field for field with caffe.proto's own names, numbers,
labels and defaults, and let :mod:`google.protobuf` build the message classes at import time
(``descriptor_pb2.FileDescriptorProto`` -> ``message_factory``).

Binary files: fields we do not declare are kept by protobuf as unknown fields and ignored, so a
``.caffemodel`` holding extra parameters still reads. Text files are parsed strictly: an
undeclared field is an error naming the line (see :func:`bench.models.caffe.io.read_prototxt`).

Declared (numbers as in caffe.proto):

* ``BlobShape`` dim=1 (packed int64); ``BlobProto`` num=1 channels=2 height=3 width=4 data=5
  (packed float) diff=6 shape=7 double_data=8 double_diff=9;
* ``NetParameter`` name=1 layers=2 (V1) input=3 input_dim=4 force_backward=5 state=6
  debug_info=7 input_shape=8 layer=100;
* ``LayerParameter`` name=1 type=2 bottom=3 top=4 loss_weight=5 param=6 blobs=7 include=8
  exclude=9 phase=10 propagate_down=11 and the parameter messages transform_param=100
  loss_param=101 accuracy_param=102 concat_param=104 convolution_param=106 data_param=107
  dropout_param=108 image_data_param=115 inner_product_param=117 lrn_param=118
  pooling_param=121 relu_param=123 softmax_param=125 input_param=143;
* ``V1LayerParameter`` bottom=2 top=3 name=4 type=5 (``LayerType`` enum) blobs=6 blobs_lr=7
  weight_decay=8 concat_param=9 convolution_param=10 data_param=11 dropout_param=12
  image_data_param=15 inner_product_param=17 lrn_param=18 pooling_param=19 relu_param=30
  accuracy_param=27 include=32 exclude=33 loss_weight=35 transform_param=36 softmax_param=39
  loss_param=42;
* the parameter messages ConvolutionParameter, PoolingParameter, LRNParameter,
  InnerProductParameter, ConcatParameter, DropoutParameter, ReLUParameter, SoftmaxParameter,
  InputParameter, FillerParameter, ParamSpec, NetState, NetStateRule and the data-layer messages
  TransformationParameter, DataParameter, ImageDataParameter, AccuracyParameter, LossParameter
  (complete, so train/val files parse strictly).
"""

from __future__ import annotations

from typing import Any

try:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "reading Caffe files needs the 'protobuf' package: pip install 'wsol-bench[caffe]'"
    ) from exc

__all__ = ["NetParameter", "LayerParameter", "V1LayerParameter", "BlobProto", "BlobShape", "V1_TYPE_NAMES"]

_F = descriptor_pb2.FieldDescriptorProto
_LABEL = {"opt": _F.LABEL_OPTIONAL, "rep": _F.LABEL_REPEATED}
_SCALAR = {
    "int32": _F.TYPE_INT32, "uint32": _F.TYPE_UINT32, "int64": _F.TYPE_INT64, "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING,
}  # fmt: skip

# Field: (name, number, label, type, default-or-None, packed). A type that is not a scalar name
# is a message (``.caffe.X``) or, when it starts with ``enum:``, an enum (``.caffe.X.Y``).
_Field = tuple[str, int, str, str, Any, bool]

_FILLER = ".caffe.FillerParameter"
_ENGINE = ("Engine", (("DEFAULT", 0), ("CAFFE", 1), ("CUDNN", 2)))

# message -> (fields, nested enums)
_MESSAGES: dict[str, tuple[list[_Field], tuple[tuple[str, tuple[tuple[str, int], ...]], ...]]] = {
    "BlobShape": ([("dim", 1, "rep", "int64", None, True)], ()),
    "BlobProto": (
        [
            ("shape", 7, "opt", ".caffe.BlobShape", None, False),
            ("data", 5, "rep", "float", None, True),
            ("diff", 6, "rep", "float", None, True),
            ("double_data", 8, "rep", "double", None, True),
            ("double_diff", 9, "rep", "double", None, True),
            ("num", 1, "opt", "int32", 0, False),
            ("channels", 2, "opt", "int32", 0, False),
            ("height", 3, "opt", "int32", 0, False),
            ("width", 4, "opt", "int32", 0, False),
        ],
        (),
    ),
    "FillerParameter": (
        [
            ("type", 1, "opt", "string", "constant", False),
            ("value", 2, "opt", "float", 0, False),
            ("min", 3, "opt", "float", 0, False),
            ("max", 4, "opt", "float", 1, False),
            ("mean", 5, "opt", "float", 0, False),
            ("std", 6, "opt", "float", 1, False),
            ("sparse", 7, "opt", "int32", -1, False),
            ("variance_norm", 8, "opt", "enum:.caffe.FillerParameter.VarianceNorm", "FAN_IN", False),
        ],
        (("VarianceNorm", (("FAN_IN", 0), ("FAN_OUT", 1), ("AVERAGE", 2))),),
    ),
    "NetState": (
        [
            ("phase", 1, "opt", "enum:.caffe.Phase", "TEST", False),
            ("level", 2, "opt", "int32", 0, False),
            ("stage", 3, "rep", "string", None, False),
        ],
        (),
    ),
    "NetStateRule": (
        [
            ("phase", 1, "opt", "enum:.caffe.Phase", None, False),
            ("min_level", 2, "opt", "int32", None, False),
            ("max_level", 3, "opt", "int32", None, False),
            ("stage", 4, "rep", "string", None, False),
            ("not_stage", 5, "rep", "string", None, False),
        ],
        (),
    ),
    "ParamSpec": (
        [
            ("name", 1, "opt", "string", None, False),
            ("share_mode", 2, "opt", "enum:.caffe.ParamSpec.DimCheckMode", None, False),
            ("lr_mult", 3, "opt", "float", 1.0, False),
            ("decay_mult", 4, "opt", "float", 1.0, False),
        ],
        (("DimCheckMode", (("STRICT", 0), ("PERMISSIVE", 1))),),
    ),
    "ConvolutionParameter": (
        [
            ("num_output", 1, "opt", "uint32", None, False),
            ("bias_term", 2, "opt", "bool", True, False),
            ("pad", 3, "rep", "uint32", None, False),
            ("kernel_size", 4, "rep", "uint32", None, False),
            ("stride", 6, "rep", "uint32", None, False),
            ("dilation", 18, "rep", "uint32", None, False),
            ("pad_h", 9, "opt", "uint32", 0, False),
            ("pad_w", 10, "opt", "uint32", 0, False),
            ("kernel_h", 11, "opt", "uint32", None, False),
            ("kernel_w", 12, "opt", "uint32", None, False),
            ("stride_h", 13, "opt", "uint32", None, False),
            ("stride_w", 14, "opt", "uint32", None, False),
            ("group", 5, "opt", "uint32", 1, False),
            ("weight_filler", 7, "opt", _FILLER, None, False),
            ("bias_filler", 8, "opt", _FILLER, None, False),
            ("engine", 15, "opt", "enum:.caffe.ConvolutionParameter.Engine", "DEFAULT", False),
            ("axis", 16, "opt", "int32", 1, False),
            ("force_nd_im2col", 17, "opt", "bool", False, False),
        ],
        (_ENGINE,),
    ),
    "PoolingParameter": (
        [
            ("pool", 1, "opt", "enum:.caffe.PoolingParameter.PoolMethod", "MAX", False),
            ("pad", 4, "opt", "uint32", 0, False),
            ("pad_h", 9, "opt", "uint32", 0, False),
            ("pad_w", 10, "opt", "uint32", 0, False),
            ("kernel_size", 2, "opt", "uint32", None, False),
            ("kernel_h", 5, "opt", "uint32", None, False),
            ("kernel_w", 6, "opt", "uint32", None, False),
            ("stride", 3, "opt", "uint32", 1, False),
            ("stride_h", 7, "opt", "uint32", None, False),
            ("stride_w", 8, "opt", "uint32", None, False),
            ("engine", 11, "opt", "enum:.caffe.PoolingParameter.Engine", "DEFAULT", False),
            ("global_pooling", 12, "opt", "bool", False, False),
            ("round_mode", 13, "opt", "enum:.caffe.PoolingParameter.RoundMode", "CEIL", False),
        ],
        (
            ("PoolMethod", (("MAX", 0), ("AVE", 1), ("STOCHASTIC", 2))),
            _ENGINE,
            ("RoundMode", (("CEIL", 0), ("FLOOR", 1))),
        ),
    ),
    "LRNParameter": (
        [
            ("local_size", 1, "opt", "uint32", 5, False),
            ("alpha", 2, "opt", "float", 1.0, False),
            ("beta", 3, "opt", "float", 0.75, False),
            ("norm_region", 4, "opt", "enum:.caffe.LRNParameter.NormRegion", "ACROSS_CHANNELS", False),
            ("k", 5, "opt", "float", 1.0, False),
            ("engine", 6, "opt", "enum:.caffe.LRNParameter.Engine", "DEFAULT", False),
        ],
        (("NormRegion", (("ACROSS_CHANNELS", 0), ("WITHIN_CHANNEL", 1))), _ENGINE),
    ),
    "InnerProductParameter": (
        [
            ("num_output", 1, "opt", "uint32", None, False),
            ("bias_term", 2, "opt", "bool", True, False),
            ("weight_filler", 3, "opt", _FILLER, None, False),
            ("bias_filler", 4, "opt", _FILLER, None, False),
            ("axis", 5, "opt", "int32", 1, False),
            ("transpose", 6, "opt", "bool", False, False),
        ],
        (),
    ),
    "ConcatParameter": (
        [("axis", 2, "opt", "int32", 1, False), ("concat_dim", 1, "opt", "uint32", 1, False)],
        (),
    ),
    "DropoutParameter": ([("dropout_ratio", 1, "opt", "float", 0.5, False)], ()),
    "ReLUParameter": (
        [
            ("negative_slope", 1, "opt", "float", 0, False),
            ("engine", 2, "opt", "enum:.caffe.ReLUParameter.Engine", "DEFAULT", False),
        ],
        (_ENGINE,),
    ),
    "SoftmaxParameter": (
        [
            ("engine", 1, "opt", "enum:.caffe.SoftmaxParameter.Engine", "DEFAULT", False),
            ("axis", 2, "opt", "int32", 1, False),
        ],
        (_ENGINE,),
    ),
    "InputParameter": ([("shape", 1, "rep", ".caffe.BlobShape", None, False)], ()),
    "TransformationParameter": (
        [
            ("scale", 1, "opt", "float", 1, False),
            ("mirror", 2, "opt", "bool", False, False),
            ("crop_size", 3, "opt", "uint32", 0, False),
            ("mean_file", 4, "opt", "string", None, False),
            ("mean_value", 5, "rep", "float", None, False),
            ("force_color", 6, "opt", "bool", False, False),
            ("force_gray", 7, "opt", "bool", False, False),
        ],
        (),
    ),
    "DataParameter": (
        [
            ("source", 1, "opt", "string", None, False),
            ("batch_size", 4, "opt", "uint32", None, False),
            ("rand_skip", 7, "opt", "uint32", 0, False),
            ("backend", 8, "opt", "enum:.caffe.DataParameter.DB", "LEVELDB", False),
            ("scale", 2, "opt", "float", 1, False),
            ("mean_file", 3, "opt", "string", None, False),
            ("crop_size", 5, "opt", "uint32", 0, False),
            ("mirror", 6, "opt", "bool", False, False),
            ("force_encoded_color", 9, "opt", "bool", False, False),
            ("prefetch", 10, "opt", "uint32", 4, False),
        ],
        (("DB", (("LEVELDB", 0), ("LMDB", 1))),),
    ),
    "ImageDataParameter": (
        [
            ("source", 1, "opt", "string", None, False),
            ("batch_size", 4, "opt", "uint32", 1, False),
            ("rand_skip", 7, "opt", "uint32", 0, False),
            ("shuffle", 8, "opt", "bool", False, False),
            ("new_height", 9, "opt", "uint32", 0, False),
            ("new_width", 10, "opt", "uint32", 0, False),
            ("is_color", 11, "opt", "bool", True, False),
            ("scale", 2, "opt", "float", 1, False),
            ("mean_file", 3, "opt", "string", None, False),
            ("crop_size", 5, "opt", "uint32", 0, False),
            ("mirror", 6, "opt", "bool", False, False),
            ("root_folder", 12, "opt", "string", "", False),
        ],
        (),
    ),
    "AccuracyParameter": (
        [
            ("top_k", 1, "opt", "uint32", 1, False),
            ("axis", 2, "opt", "int32", 1, False),
            ("ignore_label", 3, "opt", "int32", None, False),
        ],
        (),
    ),
    "LossParameter": (
        [
            ("ignore_label", 1, "opt", "int32", None, False),
            ("normalization", 3, "opt", "enum:.caffe.LossParameter.NormalizationMode", "VALID", False),
            ("normalize", 2, "opt", "bool", None, False),
        ],
        (("NormalizationMode", (("FULL", 0), ("VALID", 1), ("BATCH_SIZE", 2), ("NONE", 3))),),
    ),
    "LayerParameter": (
        [
            ("name", 1, "opt", "string", None, False),
            ("type", 2, "opt", "string", None, False),
            ("bottom", 3, "rep", "string", None, False),
            ("top", 4, "rep", "string", None, False),
            ("phase", 10, "opt", "enum:.caffe.Phase", None, False),
            ("loss_weight", 5, "rep", "float", None, False),
            ("param", 6, "rep", ".caffe.ParamSpec", None, False),
            ("blobs", 7, "rep", ".caffe.BlobProto", None, False),
            ("propagate_down", 11, "rep", "bool", None, False),
            ("include", 8, "rep", ".caffe.NetStateRule", None, False),
            ("exclude", 9, "rep", ".caffe.NetStateRule", None, False),
            ("transform_param", 100, "opt", ".caffe.TransformationParameter", None, False),
            ("loss_param", 101, "opt", ".caffe.LossParameter", None, False),
            ("accuracy_param", 102, "opt", ".caffe.AccuracyParameter", None, False),
            ("concat_param", 104, "opt", ".caffe.ConcatParameter", None, False),
            ("convolution_param", 106, "opt", ".caffe.ConvolutionParameter", None, False),
            ("data_param", 107, "opt", ".caffe.DataParameter", None, False),
            ("dropout_param", 108, "opt", ".caffe.DropoutParameter", None, False),
            ("image_data_param", 115, "opt", ".caffe.ImageDataParameter", None, False),
            ("inner_product_param", 117, "opt", ".caffe.InnerProductParameter", None, False),
            ("lrn_param", 118, "opt", ".caffe.LRNParameter", None, False),
            ("pooling_param", 121, "opt", ".caffe.PoolingParameter", None, False),
            ("relu_param", 123, "opt", ".caffe.ReLUParameter", None, False),
            ("softmax_param", 125, "opt", ".caffe.SoftmaxParameter", None, False),
            ("input_param", 143, "opt", ".caffe.InputParameter", None, False),
        ],
        (),
    ),
    "V1LayerParameter": (
        [
            ("bottom", 2, "rep", "string", None, False),
            ("top", 3, "rep", "string", None, False),
            ("name", 4, "opt", "string", None, False),
            ("include", 32, "rep", ".caffe.NetStateRule", None, False),
            ("exclude", 33, "rep", ".caffe.NetStateRule", None, False),
            ("type", 5, "opt", "enum:.caffe.V1LayerParameter.LayerType", None, False),
            ("blobs", 6, "rep", ".caffe.BlobProto", None, False),
            ("param", 1001, "rep", "string", None, False),
            ("blobs_lr", 7, "rep", "float", None, False),
            ("weight_decay", 8, "rep", "float", None, False),
            ("loss_weight", 35, "rep", "float", None, False),
            ("accuracy_param", 27, "opt", ".caffe.AccuracyParameter", None, False),
            ("concat_param", 9, "opt", ".caffe.ConcatParameter", None, False),
            ("convolution_param", 10, "opt", ".caffe.ConvolutionParameter", None, False),
            ("data_param", 11, "opt", ".caffe.DataParameter", None, False),
            ("dropout_param", 12, "opt", ".caffe.DropoutParameter", None, False),
            ("image_data_param", 15, "opt", ".caffe.ImageDataParameter", None, False),
            ("inner_product_param", 17, "opt", ".caffe.InnerProductParameter", None, False),
            ("lrn_param", 18, "opt", ".caffe.LRNParameter", None, False),
            ("pooling_param", 19, "opt", ".caffe.PoolingParameter", None, False),
            ("relu_param", 30, "opt", ".caffe.ReLUParameter", None, False),
            ("softmax_param", 39, "opt", ".caffe.SoftmaxParameter", None, False),
            ("transform_param", 36, "opt", ".caffe.TransformationParameter", None, False),
            ("loss_param", 42, "opt", ".caffe.LossParameter", None, False),
        ],
        (
            (
                "LayerType",
                (
                    ("NONE", 0), ("ABSVAL", 35), ("ACCURACY", 1), ("ARGMAX", 30), ("BNLL", 2),
                    ("CONCAT", 3), ("CONTRASTIVE_LOSS", 37), ("CONVOLUTION", 4), ("DATA", 5),
                    ("DECONVOLUTION", 39), ("DROPOUT", 6), ("DUMMY_DATA", 32),
                    ("EUCLIDEAN_LOSS", 7), ("ELTWISE", 25), ("EXP", 38), ("FLATTEN", 8),
                    ("HDF5_DATA", 9), ("HDF5_OUTPUT", 10), ("HINGE_LOSS", 28), ("IM2COL", 11),
                    ("IMAGE_DATA", 12), ("INFOGAIN_LOSS", 13), ("INNER_PRODUCT", 14), ("LRN", 15),
                    ("MEMORY_DATA", 29), ("MULTINOMIAL_LOGISTIC_LOSS", 16), ("MVN", 34),
                    ("POOLING", 17), ("POWER", 26), ("RELU", 18), ("SIGMOID", 19),
                    ("SIGMOID_CROSS_ENTROPY_LOSS", 27), ("SILENCE", 36), ("SOFTMAX", 20),
                    ("SOFTMAX_LOSS", 21), ("SPLIT", 22), ("SLICE", 33), ("TANH", 23),
                    ("WINDOW_DATA", 24), ("THRESHOLD", 31),
                ),  # fmt: skip
            ),
        ),
    ),
    "NetParameter": (
        [
            ("name", 1, "opt", "string", None, False),
            ("input", 3, "rep", "string", None, False),
            ("input_shape", 8, "rep", ".caffe.BlobShape", None, False),
            ("input_dim", 4, "rep", "int32", None, False),
            ("force_backward", 5, "opt", "bool", False, False),
            ("state", 6, "opt", ".caffe.NetState", None, False),
            ("debug_info", 7, "opt", "bool", False, False),
            ("layer", 100, "rep", ".caffe.LayerParameter", None, False),
            ("layers", 2, "rep", ".caffe.V1LayerParameter", None, False),
        ],
        (),
    ),
}


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name="bench_caffe_minimal.proto", package="caffe", syntax="proto2")
    phase = fdp.enum_type.add(name="Phase")
    phase.value.add(name="TRAIN", number=0)
    phase.value.add(name="TEST", number=1)
    for msg_name, (fields, enums) in _MESSAGES.items():
        msg = fdp.message_type.add(name=msg_name)
        for enum_name, values in enums:
            enum = msg.enum_type.add(name=enum_name)
            for value_name, number in values:
                enum.value.add(name=value_name, number=number)
        for name, number, label, ftype, default, packed in fields:
            field = msg.field.add(name=name, number=number, label=_LABEL[label])
            if ftype in _SCALAR:
                field.type = _SCALAR[ftype]
            elif ftype.startswith("enum:"):
                field.type = _F.TYPE_ENUM
                field.type_name = ftype[len("enum:"):]
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = ftype
            if default is not None:
                field.default_value = _default_text(default)
            if packed:
                field.options.packed = True
    return fdp


def _message_classes() -> dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_build_file())
    classes = {}
    for name in _MESSAGES:
        desc = pool.FindMessageTypeByName(f"caffe.{name}")
        if hasattr(message_factory, "GetMessageClass"):
            classes[name] = message_factory.GetMessageClass(desc)
        else:  # pragma: no cover - protobuf < 4.22
            classes[name] = message_factory.MessageFactory(pool).GetPrototype(desc)
    return classes


_CLASSES = _message_classes()
NetParameter = _CLASSES["NetParameter"]
LayerParameter = _CLASSES["LayerParameter"]
V1LayerParameter = _CLASSES["V1LayerParameter"]
BlobProto = _CLASSES["BlobProto"]
BlobShape = _CLASSES["BlobShape"]

#: V1 ``LayerType`` enum number -> the new dialect's type string (for the types we build or skip).
V1_TYPE_NAMES: dict[int, str] = {
    1: "Accuracy", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout", 8: "Flatten",
    12: "ImageData", 14: "InnerProduct", 15: "LRN", 17: "Pooling", 18: "ReLU", 20: "Softmax",
    21: "SoftmaxWithLoss", 22: "Split", 29: "MemoryData", 16: "MultinomialLogisticLoss",
    7: "EuclideanLoss", 24: "WindowData", 9: "HDF5Data", 32: "DummyData", 36: "Silence",
}  # fmt: skip
