// What the configuration and policy parsers call a TOML value in their errors.
#pragma once

#include <string_view>

#include <toml++/toml.h>

namespace ipcx::broker {

inline std::string_view type_name(toml::node_type t) noexcept {
  switch (t) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
  }
  return "a value";
}

}  // namespace ipcx::broker
