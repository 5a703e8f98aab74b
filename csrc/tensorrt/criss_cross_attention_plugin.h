// TensorRT plugin "CrissCrossAttention" (namespace "segrt", version "1"), the TensorRT twin of the ONNX custom node
// `segrt::CrissCrossAttention` (inputs q, k, v; output out; no attributes) that the exporter emits when the target is
// TensorRT with this plugin. q, k: [B, Cq, H, W], v: [B, C, H, W] -> out [B, C, H, W]; float or half, all the same
// type, NCHW. Semantics: csrc/kernels/criss_cross_attention.h. Workspace: the B * H * W float log-sum-exp scratch
// of the forward kernel.
#pragma once

#include "tensorrt/plugin_base.h"

namespace segrt {
namespace trt {

class CrissCrossAttentionPlugin final : public PluginBase {
 public:
  static constexpr char const* kName = "CrissCrossAttention";
  static Fields default_fields() { return Fields{}; }

  CrissCrossAttentionPlugin(std::string name, std::string ns, Fields fields)
      : PluginBase(std::move(name), std::move(ns), std::move(fields)) {}

  char const* getPluginName() const noexcept override { return kName; }
  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;

  // Checks q, k, v dims (entries < 0 are unknown and skipped); returns an error message or "".
  static std::string check_dims(nvinfer1::Dims const& q, nvinfer1::Dims const& k, nvinfer1::Dims const& v);

 protected:
  PluginBase* copy() const override { return new CrissCrossAttentionPlugin(*this); }
};

using CrissCrossAttentionCreator = Creator<CrissCrossAttentionPlugin>;

}  // namespace trt
}  // namespace segrt
