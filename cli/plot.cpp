#include "plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace sgdstab::cli {

namespace {

std::string escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '&') out += "&amp;";
    else if (ch == '<') out += "&lt;";
    else if (ch == '>') out += "&gt;";
    else if (ch == '"') out += "&quot;";
    else out += ch;
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

struct Axis {
  double lo = 0.0, hi = 1.0;  // log10 range
  void fit(double mn, double mx) {
    lo = std::log10(mn);
    hi = std::log10(mx);
    if (hi - lo < 0.3) {  // one value, or nearly: a factor of two either side
      const double mid = 0.5 * (lo + hi);
      lo = mid - 0.3;
      hi = mid + 0.3;
    }
    const double pad = 0.05 * (hi - lo);
    lo -= pad;
    hi += pad;
  }
  // 1, 2, 5 x 10^k inside the range; just the decades when there are many.
  std::vector<double> ticks() const {
    std::vector<double> t;
    const bool decades_only = hi - lo > 3.0;
    for (int k = static_cast<int>(std::floor(lo)); k <= static_cast<int>(std::ceil(hi)); ++k)
      for (double m : {1.0, 2.0, 5.0}) {
        if (decades_only && m != 1.0) continue;
        const double v = m * std::pow(10.0, k);
        if (std::log10(v) >= lo && std::log10(v) <= hi) t.push_back(v);
      }
    return t;
  }
};

// Plot area and scales of a log-log picture.
struct Canvas {
  double w = 640, h = 480, left = 80, right = 150, top = 50, bottom = 60;
  Axis ax, ay;
  double pw() const { return w - left - right; }
  double ph() const { return h - top - bottom; }
  double sx(double x) const { return left + pw() * (std::log10(x) - ax.lo) / (ax.hi - ax.lo); }
  double sy(double y) const { return top + ph() * (1.0 - (std::log10(y) - ay.lo) / (ay.hi - ay.lo)); }
  double y_floor() const { return std::pow(10.0, ay.lo); }  // the bottom edge, in data units
};

const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
const char* colour_at(std::size_t i) { return kColours[i % (sizeof kColours / sizeof *kColours)]; }

// The <svg> header, title, subtitle, frame, ticks and axis labels.
void frame(std::ostringstream& s, const Canvas& c, const std::string& title, const std::string& subtitle,
           const std::string& x_label, const std::string& y_label, bool ticks) {
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << c.w << "\" height=\"" << c.h << "\" viewBox=\"0 0 "
    << c.w << " " << c.h << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << c.left + c.pw() / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" << escape(title)
    << "</text>\n";
  s << "<text x=\"" << c.left + c.pw() / 2 << "\" y=\"38\" text-anchor=\"middle\" fill=\"#555\">" << escape(subtitle)
    << "</text>\n";
  s << "<rect x=\"" << c.left << "\" y=\"" << c.top << "\" width=\"" << c.pw() << "\" height=\"" << c.ph()
    << "\" fill=\"none\" stroke=\"black\"/>\n";
  if (ticks) {
    for (double t : c.ax.ticks())
      s << "<line x1=\"" << c.sx(t) << "\" y1=\"" << c.top + c.ph() << "\" x2=\"" << c.sx(t) << "\" y2=\""
        << c.top + c.ph() + 5 << "\" stroke=\"black\"/><text x=\"" << c.sx(t) << "\" y=\"" << c.top + c.ph() + 18
        << "\" text-anchor=\"middle\">" << num(t) << "</text>\n";
    for (double t : c.ay.ticks())
      s << "<line x1=\"" << c.left - 5 << "\" y1=\"" << c.sy(t) << "\" x2=\"" << c.left << "\" y2=\"" << c.sy(t)
        << "\" stroke=\"black\"/><text x=\"" << c.left - 8 << "\" y=\"" << c.sy(t) + 4 << "\" text-anchor=\"end\">"
        << num(t) << "</text>\n";
  }
  s << "<text x=\"" << c.left + c.pw() / 2 << "\" y=\"" << c.h - 15 << "\" text-anchor=\"middle\">" << escape(x_label)
    << "</text>\n";
  s << "<text transform=\"translate(20," << c.top + c.ph() / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
    << escape(y_label) << "</text>\n";
}

void legend_entry(std::ostringstream& s, const Canvas& c, std::size_t row, const std::string& colour,
                  const std::string& label) {
  const double y = c.top + 10 + 18 * static_cast<double>(row);
  s << "<rect x=\"" << c.left + c.pw() + 14 << "\" y=\"" << y - 5 << "\" width=\"12\" height=\"10\" fill=\"" << colour
    << "\"/><text x=\"" << c.left + c.pw() + 30 << "\" y=\"" << y + 4 << "\">" << escape(label) << "</text>\n";
}

std::string points_attr(const std::vector<std::pair<double, double>>& xy) {
  std::ostringstream s;
  for (const auto& [x, y] : xy) s << x << "," << y << " ";
  return s.str();
}

}  // namespace

std::string scatter_svg(const std::vector<ScatterPoint>& points, const std::string& title, const std::string& x_label,
                        const std::string& y_label) {
  std::vector<ScatterPoint> pts;
  for (const auto& p : points)
    if (std::isfinite(p.x) && std::isfinite(p.y) && p.x > 0.0 && p.y > 0.0) pts.push_back(p);
  Canvas c;
  if (!pts.empty()) {
    auto [xmn, xmx] = std::minmax_element(pts.begin(), pts.end(), [](auto& a, auto& b) { return a.x < b.x; });
    auto [ymn, ymx] = std::minmax_element(pts.begin(), pts.end(), [](auto& a, auto& b) { return a.y < b.y; });
    c.ax.fit(xmn->x, xmx->x);
    c.ay.fit(ymn->y, ymx->y);
  }
  std::vector<std::string> groups;
  for (const auto& p : pts)
    if (std::find(groups.begin(), groups.end(), p.group) == groups.end()) groups.push_back(p.group);
  auto colour = [&](const std::string& g) {
    return colour_at(static_cast<std::size_t>(std::find(groups.begin(), groups.end(), g) - groups.begin()));
  };
  std::ostringstream s;
  frame(s, c, title, std::to_string(pts.size()) + " of " + std::to_string(points.size()) + " points plotted (log-log)",
        x_label, y_label, !pts.empty());
  for (const auto& p : pts)
    s << "<circle cx=\"" << c.sx(p.x) << "\" cy=\"" << c.sy(p.y) << "\" r=\"4\" fill=\"" << colour(p.group)
      << "\"><title>" << escape(p.group) << ": (" << num(p.x) << ", " << num(p.y) << ")</title></circle>\n";
  for (std::size_t g = 0; g < groups.size(); ++g) legend_entry(s, c, g, colour(groups[g]), groups[g]);
  s << "</svg>\n";
  return s.str();
}

namespace {

// The y range of the region picture: every point, band edge, bound and mark.
void fit_region(Canvas& c, const StabilityRegion& region, const std::vector<std::vector<RegionBound>>& bounds,
                const std::vector<RegionMark>& marks) {
  double lo = region.eta_gd, hi = std::max(region.eta_gd, region.eta_mean);
  auto take = [&](double v) {
    if (std::isfinite(v) && v > 0) { lo = std::min(lo, v); hi = std::max(hi, v); }
  };
  for (const RegionCurve& curve : region.curves)
    for (const RegionPoint& p : curve.points) { take(p.eta_low); take(p.eta_high); }
  for (const auto& row : bounds)
    for (const RegionBound& b : row) { take(b.sufficient); take(b.necessary); }
  for (const RegionMark& m : marks) take(m.lr);
  c.ax.fit(1.0, static_cast<double>(std::max<Index>(region.samples, 2)));
  c.ay.fit(lo, hi);
}

// One scheme: band polygon, shaded stable set, the curve (the one <path>), its points.
void region_curve(std::ostringstream& s, const Canvas& c, const StabilityRegion& region, const RegionCurve& curve,
                  const char* colour) {
  const double n = static_cast<double>(region.samples), floor = c.y_floor();
  std::vector<std::pair<double, double>> upper, lower;
  const int steps = 96;
  for (int k = 0; k <= steps; ++k) {
    const double b = std::min(n, std::pow(n, static_cast<double>(k) / steps));
    const EtaInterval e = region.band(curve.sampling, b);
    upper.push_back({c.sx(b), c.sy(std::isfinite(e.high) ? std::max(e.high, floor) : floor)});
    lower.push_back({c.sx(b), c.sy(std::max(e.low, floor))});
  }
  std::vector<std::pair<double, double>> band = upper;
  band.insert(band.end(), lower.rbegin(), lower.rend());
  s << "<polygon class=\"band\" points=\"" << points_attr(band) << "\" fill=\"" << colour
    << "\" fill-opacity=\"0.35\" stroke=\"none\"/>\n";
  std::vector<std::pair<double, double>> line, stable = {{c.sx(1.0), c.sy(floor)}};
  for (const RegionPoint& p : curve.points)
    if (p.eta_star > 0) line.push_back({c.sx(static_cast<double>(p.batch)), c.sy(std::max(p.eta_star, floor))});
  std::sort(line.begin(), line.end());
  if (line.empty()) return;
  stable.insert(stable.end(), line.begin(), line.end());
  stable.push_back({line.back().first, c.sy(floor)});
  s << "<polygon class=\"stable\" points=\"" << points_attr(stable) << "\" fill=\"" << colour
    << "\" fill-opacity=\"0.08\" stroke=\"none\"/>\n";
  s << "<path class=\"curve\" d=\"";
  for (std::size_t k = 0; k < line.size(); ++k) s << (k ? " L " : "M ") << line[k].first << " " << line[k].second;
  s << "\" fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"2\"/>\n";
  for (const RegionPoint& p : curve.points)
    if (p.eta_star > 0)
      s << "<circle cx=\"" << c.sx(static_cast<double>(p.batch)) << "\" cy=\"" << c.sy(std::max(p.eta_star, floor))
        << "\" r=\"3\" fill=\"" << colour << "\"><title>" << to_string(curve.sampling) << " B = " << p.batch
        << ": eta* = " << num(p.eta_star) << (p.converged() ? "" : " (" + to_string(p.status()) + ")")
        << "</title></circle>\n";
}

void region_bounds(std::ostringstream& s, const Canvas& c, const std::vector<RegionBound>& row, const char* colour) {
  std::vector<std::pair<double, double>> suff, nec;
  for (const RegionBound& b : row) {
    if (b.sufficient > 0 && std::isfinite(b.sufficient)) suff.push_back({c.sx(b.batch), c.sy(b.sufficient)});
    if (b.necessary > 0 && std::isfinite(b.necessary)) nec.push_back({c.sx(b.batch), c.sy(b.necessary)});
  }
  std::sort(suff.begin(), suff.end());
  std::sort(nec.begin(), nec.end());
  if (!suff.empty())
    s << "<polyline class=\"bound-sufficient\" points=\"" << points_attr(suff) << "\" fill=\"none\" stroke=\""
      << colour << "\" stroke-dasharray=\"6,3\"/>\n";
  if (!nec.empty())
    s << "<polyline class=\"bound-necessary\" points=\"" << points_attr(nec) << "\" fill=\"none\" stroke=\""
      << colour << "\" stroke-dasharray=\"1,3\"/>\n";
}

}  // namespace

std::string region_svg(const StabilityRegion& region, const std::vector<std::vector<RegionBound>>& bounds,
                       const std::vector<RegionMark>& marks, const std::string& title) {
  Canvas c;
  c.right = 190;
  fit_region(c, region, bounds, marks);
  std::ostringstream s;
  frame(s, c, title, "stable below each curve; band: certified eta*(B) between the points (log-log)",
        "batch size B", "learning rate eta", true);
  for (std::size_t k = 0; k < region.curves.size(); ++k) {
    region_curve(s, c, region, region.curves[k], colour_at(k));
    if (k < bounds.size()) region_bounds(s, c, bounds[k], colour_at(k));
    legend_entry(s, c, k, colour_at(k), to_string(region.curves[k].sampling));
  }
  const bool momentum = region.momentum.beta > 0.0;
  const double gd = c.sy(momentum ? region.eta_mean : region.eta_gd);
  const std::string gd_label = region.adam ? (momentum ? "full-batch Adam limit" : "full-batch RMSProp limit")
                               : !momentum ? "2/lambda_max"
                               : region.momentum.nesterov ? "2(1+beta)/((1+2 beta) lambda_max)"
                                                          : "2(1+beta)/lambda_max";
  s << "<line class=\"eta-gd\" x1=\"" << c.left << "\" y1=\"" << gd << "\" x2=\"" << c.left + c.pw() << "\" y2=\"" << gd
    << "\" stroke=\"black\" stroke-dasharray=\"4,4\"/><text x=\"" << c.left + c.pw() - 4 << "\" y=\"" << gd - 4
    << "\" text-anchor=\"end\">" << gd_label << "</text>\n";
  std::size_t row = region.curves.size();
  if (!bounds.empty()) {
    legend_entry(s, c, row++, "#888", "dashed: sufficient bound");
    legend_entry(s, c, row++, "#888", "dotted: necessary bound");
  }
  for (const RegionMark& m : marks)
    s << "<circle class=\"mark\" cx=\"" << c.sx(m.batch) << "\" cy=\"" << c.sy(m.lr) << "\" r=\"6\" fill=\""
      << (m.stable ? colour_at(m.curve) : "white") << "\" stroke=\"" << colour_at(m.curve)
      << "\" stroke-width=\"2\"><title>lr = " << num(m.lr) << ", B = " << num(m.batch) << " ("
      << to_string(region.curves.at(m.curve).sampling) << ")" << (m.stable ? ": stable" : ": unstable") << "</title></circle>\n";
  if (!marks.empty()) legend_entry(s, c, row, "#888", "marks: filled stable, hollow not");
  s << "</svg>\n";
  return s.str();
}

std::string band_region_svg(Index samples, double eta_gd, const std::vector<BandCurve>& curves,
                            const std::vector<BandMark>& marks, const std::string& title,
                            const std::string& limit_label) {
  Canvas c;
  c.right = 190;
  double lo = eta_gd, hi = eta_gd;
  auto take = [&](double v) {
    if (std::isfinite(v) && v > 0) { lo = std::min(lo, v); hi = std::max(hi, v); }
  };
  for (const BandCurve& curve : curves)
    for (const BandResult& b : curve.points) { take(b.eta_low); take(b.eta_high); }
  for (const BandMark& m : marks) take(m.lr);
  c.ax.fit(1.0, static_cast<double>(std::max<Index>(samples, 2)));
  c.ay.fit(lo, hi);
  const double floor = c.y_floor();
  std::ostringstream s;
  frame(s, c, title, "eta*(B) between the ends of each bar (upper end certified); log-log", "batch size B",
        "learning rate eta", true);
  for (std::size_t k = 0; k < curves.size(); ++k) {
    const char* colour = colour_at(k);
    std::vector<std::pair<double, double>> upper, lower;
    for (const BandResult& b : curves[k].points) {
      const double x = c.sx(static_cast<double>(b.batch));
      const double yh = c.sy(std::max(b.eta_high, floor)), yl = c.sy(std::max(b.eta_low, floor));
      upper.push_back({x, yh});
      lower.push_back({x, yl});
      s << "<line class=\"interval\" x1=\"" << x << "\" y1=\"" << yl << "\" x2=\"" << x << "\" y2=\"" << yh
        << "\" stroke=\"" << colour << "\" stroke-width=\"6\" stroke-opacity=\"0.45\"><title>"
        << to_string(curves[k].sampling) << " B = " << b.batch << ": " << num(b.eta_low) << " (" << b.eta_low_kind
        << ") <= eta* <= " << num(b.eta_high) << (b.converged() ? "" : " (" + to_string(b.status()) + ")")
        << "</title></line>\n";
    }
    std::sort(upper.begin(), upper.end());
    std::sort(lower.begin(), lower.end());
    if (!upper.empty()) {
      s << "<path class=\"curve\" d=\"";
      for (std::size_t q = 0; q < upper.size(); ++q) s << (q ? " L " : "M ") << upper[q].first << " " << upper[q].second;
      s << "\" fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"2\"/>\n";
      s << "<polyline class=\"lower\" points=\"" << points_attr(lower) << "\" fill=\"none\" stroke=\"" << colour
        << "\" stroke-dasharray=\"6,3\"/>\n";
    }
    legend_entry(s, c, k, colour_at(k), to_string(curves[k].sampling));
  }
  const double gd = c.sy(eta_gd);
  s << "<line class=\"eta-gd\" x1=\"" << c.left << "\" y1=\"" << gd << "\" x2=\"" << c.left + c.pw() << "\" y2=\"" << gd
    << "\" stroke=\"black\" stroke-dasharray=\"4,4\"/><text x=\"" << c.left + c.pw() - 4 << "\" y=\"" << gd - 4
    << "\" text-anchor=\"end\">" << limit_label << "</text>\n";
  std::size_t row = curves.size();
  legend_entry(s, c, row++, "#888", "solid: eta_high, dashed: eta_low");
  for (const BandMark& m : marks) {
    const char* colour = colour_at(m.curve);
    const bool stable = m.verdict == BandMark::Verdict::stable, undecided = m.verdict == BandMark::Verdict::undecided;
    s << "<circle class=\"mark\" cx=\"" << c.sx(m.batch) << "\" cy=\"" << c.sy(m.lr) << "\" r=\"6\" fill=\""
      << (stable ? colour : undecided ? "#bbb" : "white") << "\" stroke=\"" << colour
      << "\" stroke-width=\"2\"><title>lr = " << num(m.lr) << ", B = " << num(m.batch) << " ("
      << to_string(curves.at(m.curve).sampling) << ")"
      << (stable ? ": stable" : undecided ? ": undecided (inside the band)" : ": unstable") << "</title></circle>\n";
  }
  if (!marks.empty()) legend_entry(s, c, row, "#888", "marks: filled stable, hollow not, grey undecided");
  s << "</svg>\n";
  return s.str();
}

}  // namespace sgdstab::cli
