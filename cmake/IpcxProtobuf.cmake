# ipcx_protobuf_generate(TARGET tgt PROTOS a.proto [b.proto ...] [IMPORT_DIRS dir ...] [OUT_DIR dir])
#
# Runs protoc with --cpp_out and --ipcx_out (protoc-gen-ipcx) on PROTOS at build time and adds
# what they generate (NAME.pb.cc, NAME.pb.h, NAME.ipcx.h) to `tgt`, with OUT_DIR on its include
# path and protobuf and ipcx linked (PUBLIC). Relative paths are taken from the current source
# directory. IMPORT_DIRS are protoc's -I (default: the current source directory); each proto
# must lie under one of them, and its path there names the generated files
# (IMPORT_DIR/calc/v1/calc.proto -> OUT_DIR/calc/v1/calc.ipcx.h). OUT_DIR defaults to
# ${CMAKE_CURRENT_BINARY_DIR}/${tgt}.protos.
#
# The plugin is the protoc-gen-ipcx target in the ipcx build tree, else the installed one
# (find_package(ipcx) records its path).
function(ipcx_protobuf_generate)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "TARGET;OUT_DIR" "PROTOS;IMPORT_DIRS")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "ipcx_protobuf_generate: unexpected arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT arg_TARGET OR NOT TARGET ${arg_TARGET})
    message(FATAL_ERROR "ipcx_protobuf_generate: TARGET must name an existing target (got '${arg_TARGET}')")
  endif()
  if(NOT arg_PROTOS)
    message(FATAL_ERROR "ipcx_protobuf_generate(${arg_TARGET}): PROTOS is empty")
  endif()
  if(NOT arg_IMPORT_DIRS)
    set(arg_IMPORT_DIRS ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  if(NOT arg_OUT_DIR)
    set(arg_OUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/${arg_TARGET}.protos)
  endif()
  get_filename_component(out_dir "${arg_OUT_DIR}" ABSOLUTE BASE_DIR ${CMAKE_CURRENT_BINARY_DIR})

  if(NOT TARGET protobuf::libprotobuf OR NOT TARGET protobuf::protoc)
    find_package(Protobuf REQUIRED)
  endif()
  if(TARGET protoc-gen-ipcx)
    set(plugin $<TARGET_FILE:protoc-gen-ipcx>)
    set(plugin_dep protoc-gen-ipcx)
  else()
    get_property(plugin GLOBAL PROPERTY IPCX_PROTOC_GEN_IPCX)
    if(NOT plugin OR NOT EXISTS "${plugin}")
      message(FATAL_ERROR "ipcx_protobuf_generate: protoc-gen-ipcx not found ('${plugin}'); is ipcx installed with its tools?")
    endif()
    set(plugin_dep ${plugin})
  endif()

  set(include_args)
  set(import_dirs)
  foreach(dir IN LISTS arg_IMPORT_DIRS)
    get_filename_component(dir "${dir}" ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND import_dirs ${dir})
    list(APPEND include_args -I${dir})
  endforeach()

  # A proto may import another of the same call: each command depends on all of them.
  set(all_protos)
  foreach(proto IN LISTS arg_PROTOS)
    get_filename_component(abs "${proto}" ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND all_protos ${abs})
  endforeach()

  set(sources)
  foreach(proto IN LISTS arg_PROTOS)
    get_filename_component(abs "${proto}" ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    set(rel)
    foreach(dir IN LISTS import_dirs)
      file(RELATIVE_PATH candidate ${dir} ${abs})
      if(NOT candidate MATCHES "^\\.\\./")
        set(rel ${candidate})
        break()
      endif()
    endforeach()
    if(NOT rel)
      message(FATAL_ERROR "ipcx_protobuf_generate(${arg_TARGET}): ${abs} is under none of the IMPORT_DIRS (${import_dirs})")
    endif()
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    set(outputs ${out_dir}/${stem}.pb.cc ${out_dir}/${stem}.pb.h ${out_dir}/${stem}.ipcx.h)
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
      COMMAND protobuf::protoc ${include_args} --cpp_out=${out_dir} --ipcx_out=${out_dir}
              --plugin=protoc-gen-ipcx=${plugin} ${abs}
      DEPENDS ${all_protos} protobuf::protoc ${plugin_dep}
      COMMENT "protoc: ${rel} (protobuf messages and ipcx RPC stubs)"
      VERBATIM)
    # protoc's own code is not held to this project's warning flags.
    set_source_files_properties(${out_dir}/${stem}.pb.cc PROPERTIES COMPILE_OPTIONS "-w")
    list(APPEND sources ${outputs})
  endforeach()

  target_sources(${arg_TARGET} PRIVATE ${sources})
  target_include_directories(${arg_TARGET} PUBLIC ${out_dir})
  target_link_libraries(${arg_TARGET} PUBLIC protobuf::libprotobuf ipcx::ipcx)
endfunction()
