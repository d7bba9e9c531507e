// Fuzz build only (MINIDL_FUZZ=ON): stb_image and stb_image_resize compiled from Debian's
// headers (the same snapshot as libstb.so) with the sanitizers and libFuzzer's coverage, so the
// image harness sees into the decoders. The executable's definitions take precedence over
// libstb.so's. The normal build never compiles this file. UBSan's signed-overflow and shift
// checks are off for this file only (tests/fuzz/CMakeLists.txt says why).
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
