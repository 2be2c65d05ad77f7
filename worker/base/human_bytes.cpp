#include "worker/base/human_bytes.h"

#include <cmath>
#include <cstdio>

namespace memsweep {

std::string human_bytes(double bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  int unit = 0;
  while (std::fabs(bytes) >= 999.5 && unit < 5) bytes /= 1000, ++unit;
  char text[32];
  const double magnitude = std::fabs(bytes);
  const int decimals = unit == 0 || magnitude >= 99.95 ? 0 : magnitude >= 9.995 ? 1 : 2;
  std::snprintf(text, sizeof text, "%.*f", decimals, bytes);
  std::string number = text;
  if (number.find('.') != std::string::npos) {  // 1.50 -> 1.5, 2.00 -> 2
    while (number.back() == '0') number.pop_back();
    if (number.back() == '.') number.pop_back();
  }
  return number + " " + kUnits[unit];
}

}  // namespace memsweep
