"""The committed MLPerf Tiny models (models/mlperf/): loadable, plain, of the right size."""

import numpy as np
import onnx
import onnx.numpy_helper
import onnx.shape_inference
import pytest

from codesign.ortwitness import create_session
from models import mlperf

#: MACs worked out by hand from the reference architectures (conv: H_out·W_out·K_h·K_w·C_in/g·
#: C_out, FC: in·out), so a change to a builder cannot silently move both sides of the comparison.
EXPECTED_MACS = {
    # conv1 25·5·10·4·64 + 4 × (dw 25·5·9·64 + pw 25·5·64·64) + FC 64·12
    "dscnn": 320_000 + 4 * (72_000 + 512_000) + 768,
    # conv1 48²·27·8, then per block (dw H_out²·9·C_in + pw H_out²·C_in·C_out), FC 256·2
    "mobilenet_v1_025": 48 * 48 * 27 * 8 + sum(h * h * c_in * (9 + c_out) for h, c_in, c_out in [
        (48, 8, 16), (24, 16, 32), (24, 32, 32), (12, 32, 64), (12, 64, 64), (6, 64, 128),
        *[(6, 128, 128)] * 5, (3, 128, 256), (3, 256, 256)]) + 256 * 2,
    # conv1 + stage 1 (2 convs) + stages 2, 3 (2 convs + 1×1 shortcut each) + FC 64·10
    "resnet8": 442_368 + 2 * 2_359_296 + (1_179_648 + 2_359_296 + 131_072) * 2 + 640,
    # 640·128 + 3·128·128 + 128·8 + 8·128 + 3·128·128 + 128·640
    "fc_autoencoder": 2 * 81_920 + 6 * 16_384 + 2 * 1_024,
}

NAMES = list(mlperf.MODELS)


@pytest.fixture(scope="module", params=NAMES)
def model(request):
    """(metadata, loaded quantized ModelProto with inferred shapes)."""
    meta = mlperf.MODELS[request.param]
    proto = onnx.shape_inference.infer_shapes(onnx.load(mlperf.path(request.param)),
                                              strict_mode=True)
    return meta, proto


def _shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    return tuple(d.dim_value for d in value.type.tensor_type.shape.dim)


def _graph_macs(proto: onnx.ModelProto) -> int:
    """MACs of the Conv/Gemm/MatMul nodes, from weight initializers and inferred shapes.

    In QDQ form a weight reaches its node through a DequantizeLinear of an int8 initializer.
    """
    graph = proto.graph
    inits = {i.name: tuple(i.dims) for i in graph.initializer}
    shapes = {v.name: _shape(v) for v in [*graph.value_info, *graph.input, *graph.output]}
    producer = {out: node for node in graph.node for out in node.output}

    def weight_shape(name: str) -> tuple[int, ...]:
        if name in inits:
            return inits[name]
        dq = producer[name]
        assert dq.op_type == "DequantizeLinear", dq.op_type
        return inits[dq.input[0]]

    macs = 0
    for node in graph.node:
        if node.op_type == "Conv":
            # weight C_out × C_in/groups × K_h × K_w: MACs = H_out·W_out·(that product)
            spatial = int(np.prod(shapes[node.output[0]][2:]))
            macs += spatial * int(np.prod(weight_shape(node.input[1])))
        elif node.op_type in ("Gemm", "MatMul"):
            assert shapes[node.output[0]][0] == 1  # batch 1: in·out, whatever the transposition
            macs += int(np.prod(weight_shape(node.input[1])))
    return macs


def test_expected_files_exist():
    assert sorted(p.name for p in mlperf.OUT_DIR.glob("*.onnx")) == sorted(
        f"{name}.onnx" for name in NAMES)


def test_runs_in_onnxruntime(model):
    meta, _ = model
    session = create_session(mlperf.path(meta.name))  # exact U8S8 kernels (DESIGN.md §3.1)
    (inp,) = session.get_inputs()
    assert tuple(inp.shape) == meta.input_shape
    x = mlperf.calibration_inputs(meta, seed=1)[0]
    (y,) = session.run(None, {inp.name: x})
    assert y.dtype == np.float32 and y.shape[0] == 1 and np.isfinite(y).all()
    assert np.ptp(y) > 0  # random weights, yet not a degenerate constant output


def test_plain_graph(model):
    meta, proto = model
    ops = {node.op_type for node in proto.graph.node}
    assert not ops & {"BatchNormalization", "Softmax"}
    # What the frontend must support, and nothing else.
    assert ops <= {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm", "Add", "AveragePool",
                   "Reshape"}
    (inp,) = proto.graph.input
    assert _shape(inp) == meta.input_shape
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # No exporter metadata (stack traces carry the checkout's absolute path).
    assert not any(node.metadata_props for node in proto.graph.node)


def test_quantization_format(model):
    """QDQ, uint8 activations, per-channel int8 conv/gemm weights."""
    _, proto = model
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            assert inits[node.input[2]].data_type == onnx.TensorProto.UINT8
    weights = {n.input[1] for n in graph.node if n.op_type in ("Conv", "Gemm")}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.output[0] in weights:
            assert inits[node.input[0]].data_type == onnx.TensorProto.INT8
            assert len(inits[node.input[1]].dims) == 1  # one scale per output channel


def test_macs_match_architecture(model):
    meta, proto = model
    assert _graph_macs(proto) == mlperf.count_macs(meta) == EXPECTED_MACS[meta.name]


def test_rebuild_is_byte_identical(tmp_path):
    """ResNet-8 (conv, residual Add, pool, FC), rebuilt, equals the committed file: the build is
    deterministic and the committed file is up to date with its builder."""
    mlperf.build(["resnet8"], out_dir=tmp_path)
    assert (tmp_path / "resnet8.onnx").read_bytes() == mlperf.path("resnet8").read_bytes()
