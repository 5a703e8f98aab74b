// ResizeArgmax plugin: shapes, types and enqueue (the kernel launch is in resize_argmax_plugin.cu).
#include "tensorrt/resize_argmax_plugin.h"

#include <stdexcept>

#include "tensorrt/launch.h"

namespace segrt {
namespace trt {

using nvinfer1::DataType;

ResizeArgmaxPlugin::ResizeArgmaxPlugin(std::string name, std::string ns, Fields fields)
    : PluginBase(std::move(name), std::move(ns), std::move(fields)) {
  if (fields_.get("out_h") < 0 || fields_.get("out_w") < 0) {
    throw std::invalid_argument("out_h and out_w must be >= 0 (0: size from an input)");
  }
  const int32_t ac = fields_.get("align_corners");
  if (ac != 0 && ac != 1) throw std::invalid_argument("align_corners must be 0 or 1");
}

int32_t ResizeArgmaxPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                               int32_t nbInputs) const noexcept {
  if (nbOutputs != 1 || nbInputs < 1) return -1;
  outputTypes[0] = DataType::kINT32;
  return 0;
}

int32_t ResizeArgmaxPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                            nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs,
                                            nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                                            nvinfer1::IExprBuilder& exprBuilder) noexcept {
  if (nbInputs < 1 || nbInputs > 2 || nbOutputs != 1 || nbShapeInputs > 1 || inputs[0].nbDims != 4) {
    log_error(name_ + ": expects logits [B, C, h, w] (+ one optional size input) and one output");
    return -1;
  }
  nvinfer1::DimsExprs& o = outputs[0];
  o.nbDims = 3;
  o.d[0] = inputs[0].d[0];
  if (nbShapeInputs == 1) {
    if (shapeInputs[0].nbDims != 2) {
      log_error(name_ + ": the shape input must hold two values (H, W)");
      return -1;
    }
    o.d[1] = shapeInputs[0].d[0];
    o.d[2] = shapeInputs[0].d[1];
  } else if (nbInputs == 2) {
    const nvinfer1::DimsExprs& s = inputs[1];
    if (s.nbDims < 2) {
      log_error(name_ + ": the size input must have at least 2 dims (..., H, W)");
      return -1;
    }
    o.d[1] = s.d[s.nbDims - 2];
    o.d[2] = s.d[s.nbDims - 1];
  } else {
    const int32_t oh = fields_.get("out_h"), ow = fields_.get("out_w");
    if (oh <= 0 || ow <= 0) {
      log_error(name_ + ": without a size input, out_h and out_w must be > 0");
      return -1;
    }
    o.d[1] = exprBuilder.constant(oh);
    o.d[2] = exprBuilder.constant(ow);
  }
  return 0;
}

bool ResizeArgmaxPlugin::supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut,
                                                   int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (pos < 0 || pos >= nbInputs + nbOutputs) return false;
  const nvinfer1::PluginTensorDesc& d = inOut[pos].desc;
  if (pos == 0) return is_float_or_half(d);
  if (pos == nbInputs) return is_linear(d) && d.type == DataType::kINT32;
  // The size input is only looked at for its shape.
  return is_linear(d) && (d.type == DataType::kFLOAT || d.type == DataType::kHALF || d.type == DataType::kINT32);
}

int32_t ResizeArgmaxPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
                                    nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs,
                                    void* const* outputs, void* workspace, cudaStream_t stream) noexcept {
  const nvinfer1::Dims& in = inputDesc[0].dims;
  const nvinfer1::Dims& out = outputDesc[0].dims;
  if (in.nbDims != 4 || out.nbDims != 3 || out.d[0] != in.d[0]) {
    log_error(name_ + ": bad runtime shapes in enqueue");
    return -1;
  }
  const cudaError_t err = launch_resize_argmax(inputs[0], static_cast<int32_t*>(outputs[0]), in.d[0], in.d[1],
                                               in.d[2], in.d[3], out.d[1], out.d[2], fields_.get("align_corners") != 0,
                                               inputDesc[0].type == DataType::kHALF, stream);
  if (err != cudaSuccess) {
    log_error(name_ + ": kernel launch failed: " + cudaGetErrorString(err));
    return -1;
  }
  return 0;
}

}  // namespace trt
}  // namespace segrt
