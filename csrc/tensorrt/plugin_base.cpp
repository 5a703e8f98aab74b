// Shared plugin base: field (de)serialisation, capability dispatch, clone, logging.
#include "tensorrt/plugin_base.h"

#include <stdexcept>

namespace segrt {
namespace trt {

void log_error(std::string const& msg) noexcept {
  try {
    nvinfer1::ILogger* logger = ::getLogger();
    if (logger != nullptr) logger->log(nvinfer1::ILogger::Severity::kERROR, ("segrt plugin: " + msg).c_str());
  } catch (...) {
  }
}

int64_t volume(nvinfer1::Dims const& d) noexcept {
  int64_t v = 1;
  for (int32_t i = 0; i < d.nbDims; ++i) v *= d.d[i] < 0 ? 0 : d.d[i];
  return v;
}

Fields::Fields(std::initializer_list<std::pair<char const*, int32_t>> defaults) {
  for (auto const& kv : defaults) {
    names_.emplace_back(kv.first);
    values_.push_back(kv.second);
  }
}

Fields::Fields(Fields const& other) : names_(other.names_), values_(other.values_) {}

Fields& Fields::operator=(Fields const& other) {
  names_ = other.names_;
  values_ = other.values_;
  view_.clear();
  fc_ = {};
  return *this;
}

int32_t Fields::get(char const* name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return values_[i];
  }
  throw std::out_of_range(std::string("unknown plugin field '") + name + "'");
}

void Fields::set(char const* name, int32_t value) {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) {
      values_[i] = value;
      return;
    }
  }
  throw std::out_of_range(std::string("unknown plugin field '") + name + "'");
}

void Fields::parse(nvinfer1::PluginFieldCollection const* fc) {
  if (fc == nullptr) return;
  if (fc->nbFields > 0 && fc->fields == nullptr) throw std::invalid_argument("field collection without fields");
  for (int32_t i = 0; i < fc->nbFields; ++i) {
    nvinfer1::PluginField const& f = fc->fields[i];
    if (f.name == nullptr) continue;
    size_t k = 0;
    while (k < names_.size() && names_[k] != f.name) ++k;
    if (k == names_.size()) continue;  // not ours (plugin_namespace, plugin_version, ...)
    if (f.type != nvinfer1::PluginFieldType::kINT32 || f.length != 1 || f.data == nullptr) {
      throw std::invalid_argument("field '" + names_[k] + "' must be one int32");
    }
    std::memcpy(&values_[k], f.data, sizeof(int32_t));
  }
}

nvinfer1::PluginFieldCollection const* Fields::collection() noexcept {
  view_.clear();
  for (size_t i = 0; i < names_.size(); ++i) {
    view_.emplace_back(names_[i].c_str(), &values_[i], nvinfer1::PluginFieldType::kINT32, 1);
  }
  fc_.nbFields = static_cast<int32_t>(view_.size());
  fc_.fields = view_.empty() ? nullptr : view_.data();
  return &fc_;
}

nvinfer1::IPluginCapability* PluginBase::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
  switch (type) {
    case nvinfer1::PluginCapabilityType::kBUILD:
      return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME:
      return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    case nvinfer1::PluginCapabilityType::kCORE:
      return static_cast<nvinfer1::IPluginV3OneCore*>(this);
  }
  return nullptr;
}

nvinfer1::IPluginV3* PluginBase::clone() noexcept {
  try {
    return copy();
  } catch (std::exception const& e) {
    log_error(name_ + ": clone failed: " + e.what());
  } catch (...) {
    log_error(name_ + ": clone failed");
  }
  return nullptr;
}

}  // namespace trt
}  // namespace segrt
