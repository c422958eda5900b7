#pragma once
// Dependency-free SVG pictures on log-log axes: the sweep's |H|_F against
// sqrt(B)/eta scatter plot, and the stability region (eta against B).
#include <string>
#include <vector>

#include "sgdstab/band.hpp"
#include "sgdstab/geometry.hpp"
#include "sgdstab/region.hpp"
#include "sgdstab/stability.hpp"

namespace sgdstab::cli {

struct ScatterPoint {
  double x = 0.0, y = 0.0;
  std::string group;  ///< legend entry; one colour per group, in order of appearance
};

/// SVG text of a log-log scatter plot. Points with a non-positive or
/// non-finite coordinate are left out (the count is printed under the title).
std::string scatter_svg(const std::vector<ScatterPoint>& points, const std::string& title, const std::string& x_label,
                        const std::string& y_label);

/// A user's (lr, B) on the region picture, and whether it is stable.
struct RegionMark {
  double lr = 0.0;
  double batch = 0.0;
  bool stable = false;
  std::size_t curve = 0;  ///< index of the scheme (its colour) the verdict is for
};

/// The bounds of `sgdstab bounds` at one point of one scheme's curve.
struct RegionBound {
  double batch = 0.0;
  double sufficient = 0.0;  ///< eta_sufficient (below eta*)
  double necessary = 0.0;   ///< the smallest necessary bound (above eta*)
};

/// SVG of the stability region: eta against B (log-log); per scheme its
/// certified band (a polygon), the stable set below the curve shaded, the
/// curve through the points (exactly one <path> per scheme) and, when given,
/// its bounds (dashed: sufficient, dotted: necessary); 2/lambda_max as a
/// line; marks in their scheme's colour (filled: stable, hollow: unstable).
std::string region_svg(const StabilityRegion& region, const std::vector<std::vector<RegionBound>>& bounds,
                       const std::vector<RegionMark>& marks, const std::string& title);

/// Computes the bounds of `sgdstab bounds` at every point of the region (when
/// g is given: they need the whole geometry) and writes its picture to
/// `path` atomically (cli/cmd_region.cpp).
void write_region_plot(const std::string& path, const Geometry* g, const StabilityRegion& region,
                       const std::vector<RegionMark>& marks, const SolverOptions& options);

/// One scheme's bands at the computed batch sizes (the band engine of
/// `sgdstab region`, theory/band.md section 7).
struct BandCurve {
  Sampling sampling = Sampling::without_replacement;
  std::vector<BandResult> points;  ///< in the order of the requested batches
};

/// A user's (lr, B) judged against a band: stable below eta_low, unstable
/// above eta_high, undecided between.
struct BandMark {
  double lr = 0.0;
  double batch = 0.0;
  enum class Verdict { stable, unstable, undecided } verdict = Verdict::undecided;
  std::size_t curve = 0;  ///< index of the scheme (its colour)
};

/// SVG of a band region: eta against B (log-log); per scheme a vertical bar
/// from eta_low to eta_high at every computed B (nothing is claimed between
/// the computed batch sizes), the upper sides joined by a solid line (the one
/// <path> per scheme) and the lower sides by a dashed one; eta_gd as a line
/// labelled limit_label (with momentum its full-batch limit); marks in their
/// scheme's colour (filled: stable, hollow: unstable, grey: undecided).
std::string band_region_svg(Index samples, double eta_gd, const std::vector<BandCurve>& curves,
                            const std::vector<BandMark>& marks, const std::string& title,
                            const std::string& limit_label = "2/lambda_max");

}  // namespace sgdstab::cli
