// Registers the segrt plugin creators with TensorRT's global plugin registry when the library is loaded (dlopen /
// ctypes.CDLL / trtexec --staticPlugins), each in namespace "segrt" (canonical) and "" (so that ONNX nodes without a
// plugin_namespace attribute resolve too; TensorRT's ONNX parser ignores the node's domain).
// Do not also load this library with IPluginRegistry::loadLibrary: that would register the creators twice.
#include "tensorrt/criss_cross_attention_plugin.h"
#include "tensorrt/resize_argmax_plugin.h"

namespace segrt {
namespace trt {
namespace {

struct Registrar {
  ResizeArgmaxCreator resize_argmax{kNamespace};
  ResizeArgmaxCreator resize_argmax_default{""};
  CrissCrossAttentionCreator cca{kNamespace};
  CrissCrossAttentionCreator cca_default{""};

  Registrar() {
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    if (registry == nullptr) return;
    for (nvinfer1::IPluginCreatorV3One* c : {static_cast<nvinfer1::IPluginCreatorV3One*>(&resize_argmax),
                                             static_cast<nvinfer1::IPluginCreatorV3One*>(&resize_argmax_default),
                                             static_cast<nvinfer1::IPluginCreatorV3One*>(&cca),
                                             static_cast<nvinfer1::IPluginCreatorV3One*>(&cca_default)}) {
      registry->registerCreator(*c, c->getPluginNamespace());
    }
  }
};

Registrar g_registrar;

}  // namespace
}  // namespace trt
}  // namespace segrt

// For Python / C callers that want to confirm the library is ours: the number of creators registered at load time.
extern "C" __attribute__((visibility("default"))) int segrt_trt_plugin_count() { return 4; }
