#pragma once

// Postern's version (postern --version, postern_build_info).
#define POSTERN_VERSION "0.1.0"
