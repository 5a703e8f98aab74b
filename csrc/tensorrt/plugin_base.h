// Shared base of the segrt TensorRT 10 plugins (IPluginV3 with the V3One core/build/runtime capabilities) and of
// their creators. A plugin holds its attributes as named int32 fields (`Fields`): the same record is parsed from the
// ONNX node's attributes / network API fields (creator), serialized into the plan (getFieldsToSerialize) and parsed
// back on deserialization, so there is one code path for all three. Defaults of the base: version "1", no
// workspace, configure / onShapeChange no-ops, clone by copy, attachToContext = clone.
//
// Namespace: the canonical plugin namespace is "segrt" (ONNX node domain `segrt`, attribute plugin_namespace="segrt").
// TensorRT's ONNX parser ignores the node domain and looks plugins up by op_type + the `plugin_namespace` attribute
// (default ""), so every creator is registered twice: in "segrt" and in "" (see plugin_registration.cpp).
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace segrt {
namespace trt {

constexpr char const* kNamespace = "segrt";
constexpr char const* kVersion = "1";

// Logs through TensorRT's logger (never throws; plugins must not let exceptions cross the API).
void log_error(std::string const& msg) noexcept;

// Named int32 scalar fields with defaults, serialisable as a PluginFieldCollection.
class Fields {
 public:
  Fields() = default;
  Fields(std::initializer_list<std::pair<char const*, int32_t>> defaults);
  Fields(Fields const& other);
  Fields& operator=(Fields const& other);

  int32_t get(char const* name) const;          // throws std::out_of_range for an unknown name
  void set(char const* name, int32_t value);    // throws std::out_of_range for an unknown name
  // Reads known int32 fields from `fc`, ignores unknown names (e.g. plugin_namespace); throws on a bad type/length.
  void parse(nvinfer1::PluginFieldCollection const* fc);
  nvinfer1::PluginFieldCollection const* collection() noexcept;  // points into *this; valid until the next change
  nvinfer1::PluginFieldCollection const* names() noexcept { return collection(); }

 private:
  std::vector<std::string> names_;
  std::vector<int32_t> values_;
  std::vector<nvinfer1::PluginField> view_;
  nvinfer1::PluginFieldCollection fc_{};
};

// DataType / format predicates for supportsFormatCombination.
inline bool is_linear(nvinfer1::PluginTensorDesc const& d) noexcept {
  return d.format == nvinfer1::TensorFormat::kLINEAR;
}
inline bool is_float_or_half(nvinfer1::PluginTensorDesc const& d) noexcept {
  return is_linear(d) && (d.type == nvinfer1::DataType::kFLOAT || d.type == nvinfer1::DataType::kHALF);
}
inline bool same_type(nvinfer1::PluginTensorDesc const& a, nvinfer1::PluginTensorDesc const& b) noexcept {
  return a.type == b.type && a.format == b.format;
}
int64_t volume(nvinfer1::Dims const& d) noexcept;

class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime {
 public:
  PluginBase(std::string name, std::string ns, Fields fields)
      : name_(std::move(name)), namespace_(std::move(ns)), fields_(std::move(fields)) {}
  PluginBase(PluginBase const&) = default;
  ~PluginBase() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore (getPluginName is the subclass's)
  char const* getPluginVersion() const noexcept override { return kVersion; }
  char const* getPluginNamespace() const noexcept override { return namespace_.c_str(); }

  // IPluginV3OneBuild defaults
  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override {
    return 0;
  }
  int32_t getNbOutputs() const noexcept override { return 1; }

  // IPluginV3OneRuntime defaults
  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                        int32_t nbOutputs) noexcept override {
    return 0;
  }
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override { return clone(); }
  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override { return fields_.collection(); }

  Fields const& fields() const noexcept { return fields_; }

 protected:
  virtual PluginBase* copy() const = 0;  // new Derived(*this)

  std::string name_;
  std::string namespace_;
  Fields fields_;
};

// Creator of plugin P; P must provide: static constexpr char const* kName, static Fields default_fields(), and a
// constructor P(std::string name, std::string ns, Fields f) that validates f (throws std::invalid_argument).
template <typename P>
class Creator : public nvinfer1::IPluginCreatorV3One {
 public:
  explicit Creator(char const* ns) : namespace_(ns), names_(P::default_fields()) {}

  char const* getPluginName() const noexcept override { return P::kName; }
  char const* getPluginVersion() const noexcept override { return kVersion; }
  char const* getPluginNamespace() const noexcept override { return namespace_.c_str(); }
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return names_.names(); }

  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override {
    try {
      Fields f = P::default_fields();
      f.parse(fc);
      return new P(name != nullptr ? name : "", namespace_, std::move(f));
    } catch (std::exception const& e) {
      log_error(std::string(P::kName) + " (" + (name != nullptr ? name : "") + "): " + e.what());
    } catch (...) {
      log_error(std::string(P::kName) + ": unknown error in createPlugin");
    }
    return nullptr;
  }

 private:
  std::string namespace_;
  Fields names_;
};

}  // namespace trt
}  // namespace segrt
