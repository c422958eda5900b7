#pragma once
// A dependency-free SVG scatter plot on log-log axes (the sweep's
// |H|_F against sqrt(B)/eta figure).
#include <string>
#include <vector>

namespace sgdstab::cli {

struct ScatterPoint {
  double x = 0.0, y = 0.0;
  std::string group;  ///< legend entry; one colour per group, in order of appearance
};

/// SVG text of a log-log scatter plot. Points with a non-positive or
/// non-finite coordinate are left out (the count is printed under the title).
std::string scatter_svg(const std::vector<ScatterPoint>& points, const std::string& title, const std::string& x_label,
                        const std::string& y_label);

}  // namespace sgdstab::cli
