// TensorRT plugin "ResizeArgmax" (namespace "segrt", version "1"): logits [B, C, h, w] float/half -> labels int32
// [B, H, W], bilinear resize to (H, W) fused with argmax over C (ties keep the first class, like torch.argmax).
//
// The output size (H, W) comes from, in this order of precedence:
//   1. a shape input of two int32/int64 values (H, W) (network.add_plugin_v3(inputs, [hw], plugin), or the ONNX
//      attribute tensorrt_plugin_shape_input_indices);
//   2. a second tensor input whose last two dims are (H, W), e.g. the network's image input [B, 3, H, W];
//   3. the fields out_h, out_w (> 0).
// Field align_corners (0/1, default 0 = the project policy) selects the sampling, as in csrc/kernels/common.h.
#pragma once

#include "tensorrt/plugin_base.h"

namespace segrt {
namespace trt {

class ResizeArgmaxPlugin final : public PluginBase {
 public:
  static constexpr char const* kName = "ResizeArgmax";
  static Fields default_fields() { return Fields{{"out_h", 0}, {"out_w", 0}, {"align_corners", 0}}; }

  ResizeArgmaxPlugin(std::string name, std::string ns, Fields fields);  // throws std::invalid_argument

  char const* getPluginName() const noexcept override { return kName; }
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;

 protected:
  PluginBase* copy() const override { return new ResizeArgmaxPlugin(*this); }
};

using ResizeArgmaxCreator = Creator<ResizeArgmaxPlugin>;

}  // namespace trt
}  // namespace segrt
