#include "observe/plot_png.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "core/hash.h"

namespace tl {

namespace {

// Our own 5x9 glyphs: 9 rows of 5 bits, the top row in the highest bits; rows 7 and 8 are
// below the baseline (descenders). Characters not here draw as blanks.
struct Glyph {
  char c;
  uint64_t bits;
};
constexpr Glyph kFont[] = {
    {'0', 0x0E8CEB98B800}, {'1', 0x046108423800}, {'2', 0x0E8844447C00}, {'3', 0x1F110418B800},
    {'4', 0x0232A5F10800}, {'5', 0x1F878218B800}, {'6', 0x06443D18B800}, {'7', 0x1F0888842000},
    {'8', 0x0E8C5D18B800}, {'9', 0x0E8C5E113000}, {'A', 0x0E8C7F18C400}, {'B', 0x1E8C7D18F800},
    {'C', 0x0E8C2108B800}, {'D', 0x1E8C6318F800}, {'E', 0x1F843D087C00}, {'F', 0x1F843D084000},
    {'G', 0x0E8C2F18BC00}, {'H', 0x118C7F18C400}, {'I', 0x0E2108423800}, {'J', 0x071084293000},
    {'K', 0x119531494400}, {'L', 0x108421087C00}, {'M', 0x11DD6B18C400}, {'N', 0x118E6B38C400},
    {'O', 0x0E8C6318B800}, {'P', 0x1E8C7D084000}, {'Q', 0x0E8C63593400}, {'R', 0x1E8C7D494400},
    {'S', 0x0F841C10F800}, {'T', 0x1F2108421000}, {'U', 0x118C6318B800}, {'V', 0x118C63151000},
    {'W', 0x118C6B5AA800}, {'X', 0x118A88A8C400}, {'Y', 0x118A88421000}, {'Z', 0x1F0888887C00},
    {'a', 0x000382F8BC00}, {'b', 0x1087A318F800}, {'c', 0x0003A108B800}, {'d', 0x010BE318BC00},
    {'e', 0x0003A3F83800}, {'f', 0x064A38842000}, {'g', 0x0003E318BC2E}, {'h', 0x1085B318C400},
    {'i', 0x040308423800}, {'j', 0x020184210A4C}, {'k', 0x1084A98A4800}, {'l', 0x0C2108423800},
    {'m', 0x0006AB5AD400}, {'n', 0x0005B318C400}, {'o', 0x0003A318B800}, {'p', 0x0007A318FA10},
    {'q', 0x0003E318BC21}, {'r', 0x0005B3084000}, {'s', 0x0003E0E0F800}, {'t', 0x084710849800},
    {'u', 0x00046319B400}, {'v', 0x000463151000}, {'w', 0x0004635AA800}, {'x', 0x000454454400},
    {'y', 0x00046318BC2E}, {'z', 0x0007C4447C00}, {'.', 0x000000063000}, {',', 0x000000063088},
    {'-', 0x00001C000000}, {'+', 0x00213E420000}, {'/', 0x010888884000}, {'%', 0x19C88889CC00},
    {'(', 0x022210820800}, {')', 0x082084222000}, {':', 0x006300C60000}, {'_', 0x0000000003E0},
};
constexpr int kScale = 2;             // 5x9 glyphs drawn as 10x18
constexpr int kAdvance = 6 * kScale;  // one blank column between characters

uint64_t glyph(char c) {
  for (const Glyph& g : kFont)
    if (g.c == c) return g.bits;
  return 0;
}

}  // namespace

Canvas::Canvas(int width, int height, Rgb background)
    : w_(width), h_(height), px_(size_t(width) * height * 3) {
  TL_CHECK(width > 0 && height > 0, "a canvas of ", width, "x", height, " pixels");
  unclip();
  fill(0, 0, w_ - 1, h_ - 1, background);
}

Rgb Canvas::at(int x, int y) const {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return {};
  const uint8_t* p = &px_[(size_t(y) * w_ + x) * 3];
  return {p[0], p[1], p[2]};
}

void Canvas::set(int x, int y, Rgb c) {
  if (x < std::max(cx0_, 0) || y < std::max(cy0_, 0) || x > std::min(cx1_, w_ - 1) ||
      y > std::min(cy1_, h_ - 1))
    return;
  uint8_t* p = &px_[(size_t(y) * w_ + x) * 3];
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

void Canvas::fill(int x0, int y0, int x1, int y1, Rgb c) {
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) set(x, y, c);
}

void Canvas::line(int x0, int y0, int x1, int y1, Rgb c, int thickness) {
  // Bresenham, stamping a thickness x thickness square at every step.
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  const int lo = -(thickness - 1) / 2, hi = thickness / 2;
  for (int err = dx + dy;;) {
    fill(x0 + lo, y0 + lo, x0 + hi, y0 + hi, c);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

void Canvas::dot(int x, int y, int radius, Rgb c) {
  for (int dy = -radius; dy <= radius; ++dy)
    for (int dx = -radius; dx <= radius; ++dx)
      if (dx * dx + dy * dy <= radius * radius + radius) set(x + dx, y + dy, c);
}

int Canvas::text(int x, int y, const std::string& s, Rgb c, bool vertical) {
  for (size_t i = 0; i < s.size(); ++i) {
    const uint64_t bits = glyph(s[i]);
    for (int row = 0; row < 9; ++row)
      for (int col = 0; col < 5; ++col) {
        if (!(bits >> (44 - row * 5 - col) & 1)) continue;
        const int along = int(i) * kAdvance + col * kScale, across = row * kScale;
        if (vertical)  // the glyphs' tops face left; the text reads upwards
          fill(x + across, y - along - kScale + 1, x + across + kScale - 1, y - along, c);
        else
          fill(x + along, y + across, x + along + kScale - 1, y + across + kScale - 1, c);
      }
  }
  return text_width(s);
}

int Canvas::text_width(const std::string& s) {
  return s.empty() ? 0 : int(s.size()) * kAdvance - kScale;
}

std::string encode_png(const Canvas& c) {
  const int w = c.width(), h = c.height();
  std::vector<uint8_t> raw;
  raw.reserve(size_t(h) * (1 + 3 * size_t(w)));
  for (int y = 0; y < h; ++y) {
    raw.push_back(0);  // filter type 0: the row as it is
    for (int x = 0; x < w; ++x) {
      const Rgb p = c.at(x, y);
      raw.insert(raw.end(), {p.r, p.g, p.b});
    }
  }
  uLongf zlen = compressBound(raw.size());
  std::vector<uint8_t> z(zlen);
  TL_CHECK(compress2(z.data(), &zlen, raw.data(), raw.size(), 6) == Z_OK,
           "zlib could not compress a ", w, "x", h, " picture");
  std::string out("\x89PNG\r\n\x1a\n", 8);
  auto put32 = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out += char(v >> s & 0xff);
  };
  auto chunk = [&](const char* type, const void* data, size_t n) {
    put32(uint32_t(n));
    const size_t at = out.size();
    out.append(type, 4);
    if (n) out.append(static_cast<const char*>(data), n);
    put32(crc32_update(0, out.data() + at, 4 + n));  // over the type and the data
  };
  std::string ihdr;
  std::swap(out, ihdr);
  put32(uint32_t(w));
  put32(uint32_t(h));
  out += std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, filter 0, no interlace
  std::swap(out, ihdr);
  chunk("IHDR", ihdr.data(), ihdr.size());
  chunk("IDAT", z.data(), zlen);
  chunk("IEND", nullptr, 0);
  return out;
}

int PlotAxis::pixel(double v) const {
  double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                 : (v - lo) / (hi - lo);
  if (!std::isfinite(t)) t = 0;  // a range too narrow for doubles: no endless lines
  return int(std::lround(p0 + std::clamp(t, -0.5, 1.5) * (p1 - p0)));
}

std::vector<double> nice_ticks(double& lo, double& hi, bool log) {
  std::vector<double> ticks;
  if (log) {
    const int a = int(std::floor(std::log10(lo) + 1e-9));
    const int b = std::max(a + 1, int(std::ceil(std::log10(hi) - 1e-9)));
    lo = std::pow(10.0, a), hi = std::pow(10.0, b);
    const int every = (b - a + 7) / 8;  // at most about 8 decade labels
    for (int k = a; k <= b; k += every) {
      const double d = std::pow(10.0, k);
      ticks.push_back(d);
      if (b - a <= 2 && k < b) ticks.insert(ticks.end(), {2 * d, 5 * d});
    }
    return ticks;
  }
  if (!(hi > lo)) {  // one value: a range around it
    const double d = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= d, hi += d;
  }
  const double raw = (hi - lo) / 6, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
  const double a = std::floor(lo / step + 1e-9), b = std::ceil(hi / step - 1e-9);
  if (!(b - a >= 1 && b - a <= 100 && std::fabs(a) < 1e15))
    return {lo, hi};  // values too close for their magnitude (and doubles): just the ends
  lo = a * step, hi = b * step;
  for (int k = 0; k <= int(b - a); ++k) ticks.push_back(a + k == 0 ? 0.0 : (a + k) * step);
  return ticks;
}

std::string tick_label(double v, double step) {
  if (v == 0) return "0";
  const int es = int(std::floor(std::log10(step) + 1e-9));
  char buf[48];
  if (std::fabs(v) < 1e7 && es >= -6) {  // plain decimals, as many as the step needs
    std::snprintf(buf, sizeof buf, "%.*f", std::max(0, -es), v);
    std::string s = buf;
    if (s.find('.') != std::string::npos) {  // 0.50 -> 0.5, 10.0 -> 10
      s.erase(s.find_last_not_of('0') + 1);
      if (s.back() == '.') s.pop_back();
    }
    return s;
  }
  const int ev = int(std::floor(std::log10(std::fabs(v))));
  std::snprintf(buf, sizeof buf, "%.*g", std::clamp(ev - es + 1, 1, 12), v);
  std::string s = buf;
  for (const char* e : {"e+0", "e-0"})  // 1e-07 -> 1e-7
    if (const size_t at = s.find(e); at != std::string::npos) s.erase(at + 2, 1);
  return s;
}

namespace {

const Rgb kBackground{255, 255, 255}, kInk{20, 20, 20}, kGrid{222, 222, 222},
    kLegendBorder{160, 160, 160};

bool usable(const PlotSeries& s, size_t i, bool log) {
  return i < s.x.size() && i < s.y.size() && std::isfinite(s.x[i]) && std::isfinite(s.y[i]) &&
         (!log || s.y[i] > 0);
}

// The axes' ranges from the values they show (x from the points that are drawn).
void autoscale(const PlotSpec& spec, PlotAxis& x, PlotAxis& y, PlotAxis& y2) {
  double r[3][2] = {{INFINITY, -INFINITY}, {INFINITY, -INFINITY}, {INFINITY, -INFINITY}};
  for (const PlotSeries& s : spec.series) {
    const bool log = !s.right_axis && spec.log_y;
    for (size_t i = 0; i < s.y.size(); ++i) {
      if (!usable(s, i, log)) continue;
      double* ry = r[s.right_axis ? 2 : 1];
      r[0][0] = std::min(r[0][0], s.x[i]), r[0][1] = std::max(r[0][1], s.x[i]);
      ry[0] = std::min(ry[0], s.y[i]), ry[1] = std::max(ry[1], s.y[i]);
    }
  }
  PlotAxis* axes[3] = {&x, &y, &y2};
  for (int a = 0; a < 3; ++a) {
    PlotAxis& ax = *axes[a];
    ax.log = a == 1 && spec.log_y;
    ax.lo = r[a][0] <= r[a][1] ? r[a][0] : ax.log ? 1 : 0;  // nothing to show: a plain range
    ax.hi = r[a][0] <= r[a][1] ? r[a][1] : ax.log ? 10 : 1;
    ax.ticks = nice_ticks(ax.lo, ax.hi, ax.log);
  }
}

std::vector<std::string> labels(const PlotAxis& ax) {
  std::vector<std::string> out;
  const double step = ax.ticks.size() > 1 ? ax.ticks[1] - ax.ticks[0] : 1;
  for (double t : ax.ticks) out.push_back(tick_label(t, ax.log ? t : step));
  return out;
}

int widest(const std::vector<std::string>& l) {
  int w = 0;
  for (const std::string& s : l) w = std::max(w, Canvas::text_width(s));
  return w;
}

void draw_series(Canvas& c, const PlotSeries& s, const PlotAxis& x, const PlotAxis& y) {
  const size_t n = std::min(s.x.size(), s.y.size());
  for (size_t i = 0; i < n; ++i) {
    if (!usable(s, i, y.log)) continue;
    const int px = x.pixel(s.x[i]), py = y.pixel(s.y[i]);
    const bool prev = i > 0 && usable(s, i - 1, y.log), next = usable(s, i + 1, y.log);
    if (prev) c.line(x.pixel(s.x[i - 1]), y.pixel(s.y[i - 1]), px, py, s.color, s.thickness);
    if (s.points)
      c.dot(px, py, 3, s.color);
    else if (!prev && !next)
      c.dot(px, py, s.thickness, s.color);  // alone between gaps
  }
}

void draw_legend(Canvas& c, const PlotSpec& spec, int right, int top, int bottom) {
  std::vector<const PlotSeries*> shown;
  int tw = 0;
  for (const PlotSeries& s : spec.series)
    if (!s.title.empty()) shown.push_back(&s), tw = std::max(tw, Canvas::text_width(s.title));
  if (shown.empty()) return;
  const int row = Canvas::kTextHeight + 4, sample = 28;
  const int height = 6 + row * int(shown.size());
  const int x1 = right - 10, x0 = x1 - (8 + tw + 8 + sample + 8);
  const int y0 = spec.legend_below ? bottom - 10 - height : top + 10, y1 = y0 + height;
  c.fill(x0, y0, x1, y1, kBackground);  // the legend stays legible over the curves
  for (int x = x0; x <= x1; ++x) c.set(x, y0, kLegendBorder), c.set(x, y1, kLegendBorder);
  for (int y = y0; y <= y1; ++y) c.set(x0, y, kLegendBorder), c.set(x1, y, kLegendBorder);
  for (size_t i = 0; i < shown.size(); ++i) {
    const int ty = y0 + 6 + row * int(i), mid = ty + 7;
    c.text(x0 + 8, ty, shown[i]->title, kInk);
    c.line(x1 - 8 - sample, mid, x1 - 8, mid, shown[i]->color, shown[i]->thickness);
    if (shown[i]->points) c.dot(x1 - 8 - sample / 2, mid, 3, shown[i]->color);
  }
}

}  // namespace

Plot draw_plot(const PlotSpec& spec) {
  Plot p{Canvas(spec.width, spec.height, kBackground), {}, {}, {}};
  Canvas& c = p.canvas;
  const bool two = std::any_of(spec.series.begin(), spec.series.end(),
                               [](const PlotSeries& s) { return s.right_axis; });
  autoscale(spec, p.x, p.y, p.y2);
  const auto xl = labels(p.x), yl = labels(p.y);
  const auto y2l = two ? labels(p.y2) : std::vector<std::string>{};
  const int T = Canvas::kTextHeight, pad = 8;

  // Margins: title above; tick labels and the x label below; the y labels at the sides.
  const int left = pad + (spec.ylabel.empty() ? 0 : T + pad) + widest(yl) + 6;
  const int edge = std::max(24, Canvas::text_width(xl.back()) / 2 + 4);
  const int right =
      spec.width - 1 - (two ? 6 + widest(y2l) + pad + (spec.y2label.empty() ? 0 : T + pad) : edge);
  const int top = pad + T + pad, bottom = spec.height - 1 - (12 + T + pad + T + pad);
  p.x.p0 = left, p.x.p1 = right;
  p.y.p0 = p.y2.p0 = bottom, p.y.p1 = p.y2.p1 = top;

  for (double t : p.x.ticks) c.line(p.x.pixel(t), top, p.x.pixel(t), bottom, kGrid);
  for (double t : p.y.ticks) c.line(left, p.y.pixel(t), right, p.y.pixel(t), kGrid);
  for (int x = left; x <= right; ++x) c.set(x, top, kInk), c.set(x, bottom, kInk);
  for (int y = top; y <= bottom; ++y) c.set(left, y, kInk), c.set(right, y, kInk);
  for (size_t i = 0; i < xl.size(); ++i) {
    const int px = p.x.pixel(p.x.ticks[i]);
    c.line(px, bottom - 5, px, bottom, kInk);
    c.text(px - Canvas::text_width(xl[i]) / 2, bottom + 12, xl[i], kInk);  // below y's labels
  }
  for (size_t i = 0; i < yl.size(); ++i) {
    const int py = p.y.pixel(p.y.ticks[i]);
    c.line(left, py, left + 5, py, kInk);
    c.text(left - 6 - Canvas::text_width(yl[i]), py - 7, yl[i], kInk);
  }
  for (size_t i = 0; i < y2l.size(); ++i) {
    const int py = p.y2.pixel(p.y2.ticks[i]);
    c.line(right - 5, py, right, py, kInk);
    c.text(right + 6, py - 7, y2l[i], kInk);
  }
  const int mid_x = (left + right) / 2, mid_y = (top + bottom) / 2;
  const int title_x = mid_x - Canvas::text_width(spec.title) / 2;
  c.text(title_x, pad, spec.title, kInk);
  c.text(title_x + 1, pad, spec.title, kInk);  // twice, a pixel apart: bold
  c.text(mid_x - Canvas::text_width(spec.xlabel) / 2, bottom + 12 + T + pad, spec.xlabel, kInk);
  c.text(pad, mid_y + Canvas::text_width(spec.ylabel) / 2, spec.ylabel, kInk, true);
  if (two)
    c.text(spec.width - 1 - pad - T, mid_y + Canvas::text_width(spec.y2label) / 2, spec.y2label,
           kInk, true);

  c.clip(left, top, right, bottom);  // curves may run along the box, never past it
  for (const PlotSeries& s : spec.series) draw_series(c, s, p.x, s.right_axis ? p.y2 : p.y);
  c.unclip();
  draw_legend(c, spec, right, top, bottom);
  return p;
}

}  // namespace tl
