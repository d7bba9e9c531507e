// The Catch2 runner for minidl_tests (ctest runs each TEST_CASE as its own test).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
