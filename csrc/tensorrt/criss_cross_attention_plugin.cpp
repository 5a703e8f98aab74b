// CrissCrossAttention plugin: shapes, types, workspace and enqueue (the kernel launch is in the .cu).
#include "tensorrt/criss_cross_attention_plugin.h"

#include "tensorrt/launch.h"

namespace segrt {
namespace trt {

using nvinfer1::DataType;

namespace {

constexpr size_t kAlign = 256;

size_t lse_bytes(nvinfer1::Dims const& q) {
  if (q.nbDims != 4) return 0;
  const int64_t n = (q.d[0] < 0 ? 0 : q.d[0]) * (q.d[2] < 0 ? 0 : q.d[2]) * (q.d[3] < 0 ? 0 : q.d[3]);
  return (static_cast<size_t>(n) * sizeof(float) + kAlign - 1) / kAlign * kAlign;
}

bool known_differ(int64_t a, int64_t b) { return a >= 0 && b >= 0 && a != b; }

}  // namespace

std::string CrissCrossAttentionPlugin::check_dims(nvinfer1::Dims const& q, nvinfer1::Dims const& k,
                                                  nvinfer1::Dims const& v) {
  if (q.nbDims != 4 || k.nbDims != 4 || v.nbDims != 4) return "q, k and v must be 4-D [B, C, H, W]";
  for (int i = 0; i < 4; ++i) {
    if (known_differ(q.d[i], k.d[i])) return "q and k must have the same shape";
  }
  if (known_differ(q.d[0], v.d[0]) || known_differ(q.d[2], v.d[2]) || known_differ(q.d[3], v.d[3])) {
    return "v must have the batch, height and width of q";
  }
  return "";
}

int32_t CrissCrossAttentionPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                                   nvinfer1::DynamicPluginTensorDesc const* out,
                                                   int32_t nbOutputs) noexcept {
  if (nbInputs != 3 || nbOutputs != 1) return -1;
  std::string err = check_dims(in[0].desc.dims, in[1].desc.dims, in[2].desc.dims);
  if (err.empty()) err = check_dims(in[0].max, in[1].max, in[2].max);
  if (!err.empty()) {
    log_error(name_ + ": " + err);
    return -1;
  }
  return 0;
}

int32_t CrissCrossAttentionPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs,
                                                      DataType const* inputTypes, int32_t nbInputs) const noexcept {
  if (nbOutputs != 1 || nbInputs != 3) return -1;
  outputTypes[0] = inputTypes[2];
  return 0;
}

int32_t CrissCrossAttentionPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                                   nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs,
                                                   nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                                   nvinfer1::IExprBuilder& exprBuilder) noexcept {
  if (nbInputs != 3 || nbOutputs != 1 || nbShapeInputs != 0 || inputs[0].nbDims != 4 || inputs[1].nbDims != 4 ||
      inputs[2].nbDims != 4) {
    log_error(name_ + ": expects q, k [B, Cq, H, W], v [B, C, H, W] and one output");
    return -1;
  }
  outputs[0] = inputs[2];
  return 0;
}

bool CrissCrossAttentionPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
                                                          int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (pos < 0 || pos >= nbInputs + nbOutputs) return false;
  if (pos == 0) return is_float_or_half(inOut[0].desc);
  return same_type(inOut[pos].desc, inOut[0].desc);
}

size_t CrissCrossAttentionPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                                                   nvinfer1::DynamicPluginTensorDesc const* outputs,
                                                   int32_t nbOutputs) const noexcept {
  return nbInputs >= 1 ? lse_bytes(inputs[0].max) : 0;
}

int32_t CrissCrossAttentionPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
                                           nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs,
                                           void* const* outputs, void* workspace, cudaStream_t stream) noexcept {
  const nvinfer1::Dims &q = inputDesc[0].dims, &v = inputDesc[2].dims;
  const std::string bad = check_dims(q, inputDesc[1].dims, v);
  if (!bad.empty() || (workspace == nullptr && lse_bytes(q) > 0)) {
    log_error(name_ + ": " + (bad.empty() ? std::string("no workspace") : bad));
    return -1;
  }
  const cudaError_t err =
      launch_cca_forward(inputs[0], inputs[1], inputs[2], outputs[0], static_cast<float*>(workspace), q.d[0], q.d[1],
                         v.d[1], q.d[2], q.d[3], inputDesc[0].type == DataType::kHALF, stream);
  if (err != cudaSuccess) {
    log_error(name_ + ": kernel launch failed: " + cudaGetErrorString(err));
    return -1;
  }
  return 0;
}

}  // namespace trt
}  // namespace segrt
