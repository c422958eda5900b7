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

}  // namespace

std::string scatter_svg(const std::vector<ScatterPoint>& points, const std::string& title, const std::string& x_label,
                        const std::string& y_label) {
  std::vector<ScatterPoint> pts;
  for (const auto& p : points)
    if (std::isfinite(p.x) && std::isfinite(p.y) && p.x > 0.0 && p.y > 0.0) pts.push_back(p);
  const double w = 640, h = 480, left = 80, right = 150, top = 50, bottom = 60;
  const double pw = w - left - right, ph = h - top - bottom;
  Axis ax, ay;
  if (!pts.empty()) {
    auto [xmn, xmx] = std::minmax_element(pts.begin(), pts.end(), [](auto& a, auto& b) { return a.x < b.x; });
    auto [ymn, ymx] = std::minmax_element(pts.begin(), pts.end(), [](auto& a, auto& b) { return a.y < b.y; });
    ax.fit(xmn->x, xmx->x);
    ay.fit(ymn->y, ymx->y);
  }
  auto sx = [&](double x) { return left + pw * (std::log10(x) - ax.lo) / (ax.hi - ax.lo); };
  auto sy = [&](double y) { return top + ph * (1.0 - (std::log10(y) - ay.lo) / (ay.hi - ay.lo)); };
  static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
  std::vector<std::string> groups;
  for (const auto& p : pts)
    if (std::find(groups.begin(), groups.end(), p.group) == groups.end()) groups.push_back(p.group);
  auto colour = [&](const std::string& g) {
    const auto i = static_cast<std::size_t>(std::find(groups.begin(), groups.end(), g) - groups.begin());
    return colours[i % (sizeof colours / sizeof *colours)];
  };
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h << "\" viewBox=\"0 0 " << w
    << " " << h << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << left + pw / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" << escape(title)
    << "</text>\n";
  s << "<text x=\"" << left + pw / 2 << "\" y=\"38\" text-anchor=\"middle\" fill=\"#555\">" << pts.size() << " of "
    << points.size() << " points plotted (log-log)</text>\n";
  s << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"black\"/>\n";
  if (!pts.empty()) {
    for (double t : ax.ticks())
      s << "<line x1=\"" << sx(t) << "\" y1=\"" << top + ph << "\" x2=\"" << sx(t) << "\" y2=\"" << top + ph + 5
        << "\" stroke=\"black\"/><text x=\"" << sx(t) << "\" y=\"" << top + ph + 18 << "\" text-anchor=\"middle\">"
        << num(t) << "</text>\n";
    for (double t : ay.ticks())
      s << "<line x1=\"" << left - 5 << "\" y1=\"" << sy(t) << "\" x2=\"" << left << "\" y2=\"" << sy(t)
        << "\" stroke=\"black\"/><text x=\"" << left - 8 << "\" y=\"" << sy(t) + 4 << "\" text-anchor=\"end\">"
        << num(t) << "</text>\n";
  }
  s << "<text x=\"" << left + pw / 2 << "\" y=\"" << h - 15 << "\" text-anchor=\"middle\">" << escape(x_label)
    << "</text>\n";
  s << "<text transform=\"translate(20," << top + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
    << escape(y_label) << "</text>\n";
  for (const auto& p : pts)
    s << "<circle cx=\"" << sx(p.x) << "\" cy=\"" << sy(p.y) << "\" r=\"4\" fill=\"" << colour(p.group)
      << "\"><title>" << escape(p.group) << ": (" << num(p.x) << ", " << num(p.y) << ")</title></circle>\n";
  for (std::size_t g = 0; g < groups.size(); ++g) {
    const double y = top + 10 + 18 * static_cast<double>(g);
    s << "<circle cx=\"" << left + pw + 20 << "\" cy=\"" << y << "\" r=\"4\" fill=\"" << colour(groups[g])
      << "\"/><text x=\"" << left + pw + 30 << "\" y=\"" << y + 4 << "\">" << escape(groups[g]) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace sgdstab::cli
