// Reliability (issue #15, docs/reliability.md): the library's public
// functions called from several threads at once give the serial answers
// bit for bit; the program gives the same numbers with 1 and 2 BLAS threads;
// numerically hard inputs (ill-conditioned, rank-deficient, n = 1, p = 1,
// outputs with zero Jacobians) get a correct answer or a clear error and
// strict JSON without a NaN in it.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "foundations/memory_detail.hpp"
#include "foundations/parallel.hpp"
#include "reference.hpp"
#include "sgdstab/sgdstab.hpp"
#include "temp_files.hpp"

using Eigen::MatrixXd;
using Eigen::VectorXd;
using sgdstab::Geometry;
using sgdstab::Sampling;

namespace {

// ---------------------------------------------------------------- threads

using Task = std::function<std::vector<double>()>;

std::vector<Task> library_tasks(const MatrixXd& j, const Geometry& g) {
  sgdstab::SolverOptions dense, lanczos;
  dense.method = sgdstab::Method::dense;
  lanczos.method = sgdstab::Method::lanczos;
  std::vector<Task> t;
  t.push_back([&g, dense] {
    const auto r = sgdstab::stability_threshold(g, 3, Sampling::without_replacement, dense);
    return std::vector<double>{r.eta_star, r.report.residual};
  });
  t.push_back([&g, lanczos] {
    const auto r = sgdstab::stability_threshold(g, 5, Sampling::with_replacement, lanczos);
    return std::vector<double>{r.eta_star, r.report.error_bound, static_cast<double>(r.report.matvecs)};
  });
  t.push_back([&g] {
    const auto r = sgdstab::spectral_radius(g, 0.05, 2, Sampling::bernoulli);
    return std::vector<double>{r.rho, static_cast<double>(r.report.matvecs)};
  });
  t.push_back([&g, lanczos] {
    const auto r = sgdstab::stability_region(
        g, {Sampling::without_replacement, Sampling::with_replacement, Sampling::bernoulli}, {1, 4, 20}, lanczos);
    std::vector<double> out{static_cast<double>(r.report.matvecs)};
    for (const auto& c : r.curves)
      for (const auto& p : c.points) out.insert(out.end(), {p.eta_star, p.eta_low, p.eta_high});
    return out;
  });
  t.push_back([&g] {
    const auto b = sgdstab::stability_bounds(g, 2);
    return std::vector<double>{b.eta_star, b.eta_sufficient, b.eta_necessary_rank1, b.mu_star, b.non_uniformity};
  });
  t.push_back([&j] {
    const Geometry h = Geometry::from_jacobian(j, 2);
    const VectorXd d = h.hessian_eigenvalues();
    return std::vector<double>(d.data(), d.data() + d.size());
  });
  t.push_back([&g] {
    sgdstab::SimulationOptions o;
    o.lr = 0.05;
    o.batch = 2;
    o.seed = 7;
    o.steps = 20;
    o.trajectories = 50;
    const auto s = sgdstab::simulate_linearized(g, o);
    return std::vector<double>{s.squared_norm.back().mean, s.loss.back().mean};
  });
  t.push_back([&g] {
    const auto e = sgdstab::exact_moments(g, 0.05, 2, Sampling::without_replacement, 20);
    return std::vector<double>{e.squared_norm.back(), e.loss.back()};
  });
  return t;
}

TEST(Concurrency, PublicFunctionsFromManyThreadsGiveTheSerialAnswers) {
  const MatrixXd j = ref::gaussian(40, 30, 1601);  // n = 20, C = 2, r = 30
  const Geometry g = Geometry::from_jacobian(j, 2);
  const std::vector<Task> tasks = library_tasks(j, g);
  std::vector<std::vector<double>> serial;
  for (const Task& t : tasks) serial.push_back(t());
  constexpr int kThreads = 4;
  std::vector<std::vector<std::vector<double>>> got(kThreads, std::vector<std::vector<double>>(tasks.size()));
  std::vector<std::thread> pool;
  for (int w = 0; w < kThreads; ++w)
    pool.emplace_back([&, w] {
      for (std::size_t k = 0; k < tasks.size(); ++k) {  // each thread in its own order
        const std::size_t i = (k + static_cast<std::size_t>(w) * 3) % tasks.size();
        got[static_cast<std::size_t>(w)][i] = tasks[i]();
      }
    });
  for (std::thread& t : pool) t.join();
  for (int w = 0; w < kThreads; ++w)
    for (std::size_t i = 0; i < tasks.size(); ++i)
      EXPECT_EQ(got[static_cast<std::size_t>(w)][i], serial[i]) << "thread " << w << ", task " << i;
}

TEST(Concurrency, InterruptFlagStopsALongCallAndIsCleared) {
  const Geometry g = Geometry::from_jacobian(ref::gaussian(40, 30, 1602), 2);
  sgdstab::clear_interrupt();
  sgdstab::request_interrupt(15);
  EXPECT_TRUE(sgdstab::interrupt_requested());
  try {
    (void)sgdstab::exact_moments(g, 0.05, 2, Sampling::without_replacement, 10);
    ADD_FAILURE() << "exact_moments ran through a pending interrupt";
  } catch (const sgdstab::interrupted& e) {
    EXPECT_EQ(e.signal(), 15);
  }
  sgdstab::SolverOptions lanczos;
  lanczos.method = sgdstab::Method::lanczos;
  EXPECT_THROW((void)sgdstab::stability_threshold(g, 2, Sampling::without_replacement, lanczos), sgdstab::interrupted);
  sgdstab::clear_interrupt();
  EXPECT_FALSE(sgdstab::interrupt_requested());
  EXPECT_TRUE(sgdstab::stability_threshold(g, 2, Sampling::without_replacement, lanczos).converged());
  // From another thread, while the call runs: the call stops at its next check.
  sgdstab::SimulationOptions o;
  o.lr = 0.05;
  o.batch = 2;
  o.steps = 100000000;  // minutes if not stopped
  o.trajectories = 20;
  std::thread stopper([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    sgdstab::request_interrupt();
  });
  EXPECT_THROW((void)sgdstab::simulate_linearized(g, o), sgdstab::interrupted);
  stopper.join();
  sgdstab::clear_interrupt();
}

// The memory cgroup's room from a file tree of our own (v1 and v2 layouts,
// docs/reliability.md "Memory"): limit - (usage - inactive file cache), the
// least over the controllers, -1 without a limit.
TEST(Memory, CgroupHeadroomReadsVersionOneAndTwoTrees) {
  const testing_files::TempDir dir("sgdstab_cgroup");
  const std::string root = dir.path() + "/fs";
  auto put = [&](const std::string& rel, const std::string& text) {
    std::filesystem::create_directories(root + rel.substr(0, rel.rfind('/')));
    testing_files::write_bytes(root + rel, text);
  };
  auto headroom = [&](const std::string& proc) {
    testing_files::write_bytes(dir.file("cgroup"), proc);
    return sgdstab::detail::cgroup_headroom(dir.file("cgroup"), root);
  };
  EXPECT_EQ(sgdstab::detail::cgroup_headroom(dir.file("missing"), root), -1.0);
  EXPECT_EQ(headroom("0::/job\n"), -1.0);  // no files at all
  // v2: the job's own folder.
  put("/job/memory.max", "1000000\n");
  put("/job/memory.current", "400000\n");
  put("/job/memory.stat", "anon 250000\ninactive_file 100000\nactive_file 50000\n");
  EXPECT_EQ(headroom("0::/job\n"), 1000000.0 - (400000.0 - 100000.0));
  put("/job/memory.max", "max\n");
  EXPECT_EQ(headroom("0::/job\n"), -1.0);
  // A limit on an ancestor (Slurm's job, with the processes in a task below it).
  put("/slurm/job_1/memory.max", "3000000\n");
  put("/slurm/job_1/memory.current", "2000000\n");
  put("/slurm/job_1/step_0/task_0/memory.max", "max\n");
  put("/slurm/job_1/step_0/task_0/memory.current", "1500000\n");
  EXPECT_EQ(headroom("0::/slurm/job_1/step_0/task_0\n"), 1000000.0);
  put("/slurm/job_1/step_0/memory.max", "2900000\n");  // a tighter level below it
  put("/slurm/job_1/step_0/memory.current", "2000000\n");
  EXPECT_EQ(headroom("0::/slurm/job_1/step_0/task_0\n"), 900000.0);
  // v2, a folder this namespace does not show: the root's (a container's own
  // cgroup), which from here on bounds every v2 reading.
  put("/memory.max", "500000\n");
  put("/memory.current", "100000\n");
  EXPECT_EQ(headroom("0::/elsewhere\n"), 400000.0);
  // v1, with other controllers listed and the memory controller shared with cpu.
  put("/memory/a/b/memory.limit_in_bytes", "2000000\n");
  put("/memory/a/b/memory.usage_in_bytes", "1500000\n");
  put("/memory/a/b/memory.stat", "cache 700000\ntotal_inactive_file 500000\n");
  EXPECT_EQ(headroom("5:cpu,memory:/a/b\n3:cpu,cpuacct:/\n"), 1000000.0);
  EXPECT_EQ(headroom("4:memory:/a/b\n"), 1000000.0);
  EXPECT_EQ(headroom("4:memoryx:/a/b\n"), -1.0);  // not the memory controller
  // Both versions: the smaller room; usage above the limit: none.
  EXPECT_EQ(headroom("4:memory:/a/b\n0::/elsewhere\n"), 400000.0);
  put("/memory/a/b/memory.usage_in_bytes", "2600000\n");
  EXPECT_EQ(headroom("4:memory:/a/b\n"), 0.0);
  // v1's "no limit" (about 2^63).
  put("/memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
  EXPECT_EQ(headroom("4:memory:/a/b\n"), -1.0);
}

// The address-space limit (ulimit -v) counts: in a child with RLIMIT_AS set
// 256 MiB above its address space and the BLAS reserve, the available
// memory is that (the child allocates next to nothing meanwhile),
// a 300 MiB request is refused by name, and a .npy file larger than the
// room is refused before it is read (its size named, not called truncated).
TEST(Memory, AvailableMemorySeesTheAddressSpaceLimit) {
  const testing_files::TempDir dir("sgdstab_rlimit");
  const std::string big = dir.file("big.npy");
  {  // a valid header for 16384 x 16384 float64 and a sparse 2 GiB body
    std::string hdr = "{'descr': '<f8', 'fortran_order': False, 'shape': (16384, 16384), }";
    hdr += std::string(118 - hdr.size(), ' ') + "\n";
    std::string head = std::string("\x93NUMPY\x01\x00", 8) + char(hdr.size() & 0xff) + char(hdr.size() >> 8) + hdr;
    testing_files::write_bytes(big, head);
    ASSERT_EQ(::truncate(big.c_str(), 128 + 16384LL * 16384 * 8), 0);
  }
  const double vm_reserve = sgdstab::detail::blas_reserve_bytes() + 256.0 * 1024 * 1024;
  struct rlimit hard {};
  ASSERT_EQ(::getrlimit(RLIMIT_AS, &hard), 0);
  if (hard.rlim_max != RLIM_INFINITY) GTEST_SKIP() << "a hard RLIMIT_AS is set: the child could not raise its own";
  if (static_cast<double>(sgdstab::available_memory_bytes()) < 2.0 * vm_reserve)
    GTEST_SKIP() << "less memory available than the test's limit: the limit would not be the least reading";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // the child: only exit codes from here on
    std::ifstream status("/proc/self/status");
    std::string line;
    double vm = -1;
    while (std::getline(status, line))
      if (line.rfind("VmSize:", 0) == 0) vm = std::strtod(line.c_str() + 7, nullptr) * 1024.0;
    if (vm <= 0) ::_exit(10);
    struct rlimit rl {};
    ::getrlimit(RLIMIT_AS, &rl);
    rl.rlim_cur = static_cast<rlim_t>(vm + vm_reserve);
    if (::setrlimit(RLIMIT_AS, &rl) != 0) ::_exit(11);
    const double avail = static_cast<double>(sgdstab::available_memory_bytes());
    if (!(avail > 200.0 * 1024 * 1024 && avail <= 256.0 * 1024 * 1024)) ::_exit(12);
    try {
      sgdstab::check_memory(300.0 * 1024 * 1024, "a test request");
      ::_exit(13);
    } catch (const sgdstab::resource_error& e) {
      if (std::string(e.what()).find("a test request needs about 300.0 MiB") == std::string::npos) ::_exit(14);
    }
    try {
      (void)sgdstab::read_matrix(big);
      ::_exit(15);
    } catch (const sgdstab::resource_error& e) {
      if (std::string(e.what()).find("big.npy: reading the file needs about 2.0 GiB") == std::string::npos)
        ::_exit(16);
    } catch (...) {
      ::_exit(17);
    }
    ::_exit(0);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st)) << "the child did not exit normally";
  EXPECT_EQ(WEXITSTATUS(st), 0) << "the child's failed check (see the test's exit codes)";
}

// An exception in a worker of the library's parallel loops (std::bad_alloc
// under a memory limit) reaches the caller once every part has ended; it
// ended the process in std::terminate before.
TEST(Memory, ParallelLoopsPassTheirExceptionsToTheCaller) {
  std::vector<int> seen(4000, 0);
  try {
    sgdstab::detail::parallel_ranges(4000, 1000, [&](Eigen::Index lo, Eigen::Index hi) {
      for (Eigen::Index i = lo; i < hi; ++i) seen[static_cast<std::size_t>(i)] = 1;
      if (hi == 4000) throw std::bad_alloc();
    });
    FAIL() << "no exception";
  } catch (const std::bad_alloc&) {
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 4000);  // every part ran to its end
  const double sum = sgdstab::detail::parallel_sum(4000, 1000, [](Eigen::Index lo, Eigen::Index hi) {
    return static_cast<double>(hi - lo);
  });
  EXPECT_EQ(sum, 4000.0);
}

// A folder given as a matrix file: named as such (its size on ext4 reads as
// 2^63 - 1, which made it "too large").
TEST(Memory, AFolderIsNotAMatrixFile) {
  const testing_files::TempDir dir("sgdstab_folder");
  try {
    (void)sgdstab::read_matrix(dir.path());
    FAIL() << "no exception";
  } catch (const sgdstab::io_error& e) {
    EXPECT_NE(std::string(e.what()).find("is a directory"), std::string::npos) << e.what();
  }
  std::filesystem::create_directories(dir.file("m.npy"));
  EXPECT_THROW((void)sgdstab::read_matrix(dir.file("m.npy")), sgdstab::io_error);
}

// A .npy file through a pipe (`--gram <(...)`): not seekable, read in chunks.
TEST(Memory, MatrixFilesReadThroughAPipe) {
  const testing_files::TempDir dir("sgdstab_fifo");
  const MatrixXd m = ref::gaussian(300, 500, 1620);  // 1.2 MB: more than one 1 MiB chunk
  sgdstab::write_npy(dir.file("m.npy"), m);
  const std::string bytes = testing_files::read_bytes(dir.file("m.npy"));
  const std::string fifo = dir.file("pipe.npy");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] { testing_files::write_bytes(fifo, bytes); });
  const MatrixXd back = sgdstab::read_matrix(fifo);
  writer.join();
  EXPECT_EQ(back, m);
}

#ifdef SGDSTAB_CLI_PATH

// ---------------------------------------------------------------- the program

struct CliResult {
  int code;
  std::string out, err;
};

class Reliability : public ::testing::Test {
 protected:
  CliResult run(const std::string& args, const std::string& env = "") const {
    const std::string cmd = env + " " + std::string(SGDSTAB_CLI_PATH) + " " + args + " >" + dir_.file("out") +
                            " 2>" + dir_.file("err");
    const int status = std::system(cmd.c_str());
    return {WEXITSTATUS(status), testing_files::read_bytes(dir_.file("out")), testing_files::read_bytes(dir_.file("err"))};
  }
  std::string file(const std::string& name) const { return dir_.file(name); }
  testing_files::TempDir dir_{"sgdstab_rel"};
};

// Every number in a and b equal to within rel (timings skipped).
void expect_same_numbers(const nlohmann::json& a, const nlohmann::json& b, double rel, const std::string& where) {
  ASSERT_EQ(a.type(), b.type()) << where;
  if (a.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      // Timings differ; messages quote numbers to 17 digits (compared as numbers where they are fields).
      if (it.key().find("seconds") != std::string::npos || it.key() == "flops_per_second" || it.key() == "message" ||
          it.key() == "reason")
        continue;
      ASSERT_TRUE(b.contains(it.key())) << where << "." << it.key();
      expect_same_numbers(it.value(), b[it.key()], rel, where + "." + it.key());
    }
  } else if (a.is_array()) {
    ASSERT_EQ(a.size(), b.size()) << where;
    for (std::size_t i = 0; i < a.size(); ++i) expect_same_numbers(a[i], b[i], rel, where + "[" + std::to_string(i) + "]");
  } else if (a.is_number_float()) {
    // Residuals and error bounds are differences at rounding level: their
    // own digits are rounding noise (compared to 1e-6).
    const std::string key = where.substr(where.rfind('.') + 1);
    const bool noise = key == "residual" || key == "error_bound";
    const double x = a.get<double>(), y = b.get<double>();
    EXPECT_LE(std::abs(x - y), (noise ? 1e-6 : rel) * std::max(std::abs(x), std::abs(y)) + (noise ? 1e-12 : 0.0))
        << where << ": " << x << " vs " << y;
  } else {
    EXPECT_EQ(a, b) << where;
  }
}

TEST_F(Reliability, SameNumbersWithOneAndTwoBlasThreads) {
  // Large enough for OpenBLAS to split its products between threads (r = 72).
  sgdstab::write_npy(file("j.npy"), ref::gaussian(120, 72, 1603));
  const std::string one = "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1", two = "OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2";
  const std::string j = " --jacobian " + file("j.npy") + " --outputs 2";
  for (const std::string args : {"threshold" + j + " --batch 4 --method lanczos",
                                 "threshold" + j + " --batch 4 --method dense",
                                 "radius" + j + " --batch 3 --lr 0.002 --sampling with",
                                 "region" + j + " --batches 1,8,60",
                                 "bounds" + j + " --batch 2",
                                 "montecarlo" + j + " --batch 2 --lr 0.002 --steps 10 --trajectories 40 --blocks 20 "
                                                    "--seed 5 --quiet"}) {
    SCOPED_TRACE(args);
    const CliResult a = run(args, one), b = run(args, two);
    ASSERT_TRUE(a.code == 0 || a.code == 3 || a.code == 4) << a.err;  // a result (4: Monte Carlo disagrees)
    ASSERT_EQ(a.code, b.code) << b.err;
    nlohmann::json ja = nlohmann::json::parse(a.out), jb = nlohmann::json::parse(b.out);
    EXPECT_EQ(ja["performance"]["blas_threads"], 1);  // the machine record says what ran (issue #33)
    ja.erase("performance");
    jb.erase("performance");
    expect_same_numbers(ja, jb, 1e-12, "json");
  }
}

// Strict JSON (the parser rejects NaN / Infinity tokens) and no null where
// a number was due: every number of the output is finite. The keys that are
// null by contract (docs/cli.md): params of a Gram input, the bounds that do not
// apply (eta_alignment when gamma mu_* = 0, eta_trace_b1 unless B = 1 and
// C = 1), error_bound where the solver gives none (the spectral radius).
void expect_strict_finite_json(const std::string& text, const std::string& what) {
  EXPECT_EQ(text.find("NaN"), std::string::npos) << what;
  EXPECT_EQ(text.find("Infinity"), std::string::npos) << what;
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(text)) << what << ":\n" << text;
  std::function<void(const nlohmann::json&, const std::string&)> walk = [&](const nlohmann::json& v,
                                                                           const std::string& at) {
    if (v.is_object())
      for (auto it = v.begin(); it != v.end(); ++it) walk(it.value(), at + "." + it.key());
    else if (v.is_array())
      for (std::size_t i = 0; i < v.size(); ++i) walk(v[i], at + "[" + std::to_string(i) + "]");
    else if (v.is_null()) {
      const std::string key = at.substr(at.rfind('.') + 1);
      EXPECT_TRUE(key == "params" || key == "eta_alignment" || key == "eta_trace_b1" || key == "error_bound")
          << what << ": " << at << " is null (a NaN or Inf was computed)";
    }
  };
  walk(j, "");
}

// The exact threshold of a small problem by exhaustive enumeration.
double reference_eta(const MatrixXd& j, Eigen::Index c, Eigen::Index b, Sampling s) {
  return ref::make_reference(j, c, b, s).eta_star();
}

TEST_F(Reliability, IllConditionedGramUpTo1e14) {
  // J = U diag(sigma) V^T with sigma from 1 down to 1e-7: cond(K) = 1e14.
  const MatrixXd u = ref::random_orthogonal(8, 1604), v = ref::random_orthogonal(8, 1605);
  VectorXd sigma(8);
  for (int k = 0; k < 8; ++k) sigma(k) = std::pow(10.0, -k);  // down to 1e-7
  const MatrixXd j = u * sigma.asDiagonal() * v.transpose();  // n = 8, C = 1, p = 8
  sgdstab::write_csv(file("j.csv"), j);
  for (const std::string method : {"dense", "lanczos"}) {
    const CliResult r = run("threshold --jacobian " + file("j.csv") + " --batch 2 --method " + method);
    ASSERT_EQ(r.code, 0) << r.err;
    expect_strict_finite_json(r.out, "threshold " + method);
    EXPECT_REL_NEAR(nlohmann::json::parse(r.out)["eta_star"].get<double>(),
                    reference_eta(j, 1, 2, Sampling::without_replacement), 1e-8);
  }
  const CliResult b = run("bounds --jacobian " + file("j.csv") + " --batch 1");
  ASSERT_EQ(b.code, 0) << b.err;
  expect_strict_finite_json(b.out, "bounds");
}

TEST_F(Reliability, EigenvaluesStraddlingTheRankCutOff) {
  // Gram eigenvalues 1, 1e-3 and then 3e-14 and 1e-16 relative: the default
  // cut-off (10 max(nC, p) eps = 1.8e-14 here) lies between the last two.
  const MatrixXd u = ref::random_orthogonal(8, 1606), v = ref::random_orthogonal(8, 1607);
  VectorXd sigma = VectorXd::Zero(8);
  sigma.head(6) << 1.0, 0.7, 0.3, 0.1, 0.03, 1e-3;
  sigma(6) = std::sqrt(3e-14);
  sigma(7) = 1e-8;
  const MatrixXd j = u * sigma.asDiagonal() * v.transpose();
  const Geometry g = Geometry::from_jacobian(j, 1);
  EXPECT_EQ(g.rank(), 7);
  sgdstab::write_csv(file("j.csv"), j);
  const CliResult r = run("threshold --jacobian " + file("j.csv") + " --batch 3");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_strict_finite_json(r.out, "threshold");
  const auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["rank"], 7);
  // The discarded direction carries curvature 1e-16 / n: eta* does not see it.
  EXPECT_REL_NEAR(out["eta_star"].get<double>(), reference_eta(j, 1, 3, Sampling::without_replacement), 1e-8);
  // Raising the cut-off above 3e-14 drops one more direction, and still agrees.
  const CliResult r6 = run("threshold --jacobian " + file("j.csv") + " --batch 3 --rank-tol 1e-12");
  ASSERT_EQ(r6.code, 0) << r6.err;
  EXPECT_EQ(nlohmann::json::parse(r6.out)["rank"], 6);
  EXPECT_REL_NEAR(nlohmann::json::parse(r6.out)["eta_star"].get<double>(), out["eta_star"].get<double>(), 1e-8);
}

TEST_F(Reliability, DuplicatedSamplesGiveARankDeficientGram) {
  MatrixXd j = ref::gaussian(6, 9, 1608);  // n = 6, C = 1
  j.row(4) = j.row(1);
  j.row(5) = j.row(1);  // three copies of one sample: rank 4
  sgdstab::write_csv(file("j.csv"), j);
  sgdstab::write_csv(file("k.csv"), j * j.transpose());
  for (const std::string in : {"--jacobian " + file("j.csv"), "--gram " + file("k.csv")})
    for (const std::string scheme : {"without", "with", "bernoulli"}) {
      const CliResult r = run("threshold " + in + " --batch 2 --sampling " + scheme);
      ASSERT_EQ(r.code, 0) << r.err;
      expect_strict_finite_json(r.out, in + " " + scheme);
      const auto out = nlohmann::json::parse(r.out);
      EXPECT_EQ(out["rank"], 4);
      const Sampling s = scheme == "without" ? Sampling::without_replacement
                         : scheme == "with"  ? Sampling::with_replacement
                                             : Sampling::bernoulli;
      EXPECT_REL_NEAR(out["eta_star"].get<double>(), reference_eta(j, 1, 2, s), 1e-9);
    }
}

TEST_F(Reliability, OneSampleOneOutputOneParameter) {
  sgdstab::write_csv(file("j.csv"), MatrixXd::Constant(1, 1, 2.0));  // H = 4: GD, eta* = 2 / 4
  for (const std::string cmd : {"threshold --batch 1", "bounds --batch 1", "region", "curve"}) {
    const CliResult r = run(cmd + " --jacobian " + file("j.csv"));
    ASSERT_EQ(r.code, 0) << cmd << ": " << r.err;
    expect_strict_finite_json(r.out, cmd);
  }
  const auto t = nlohmann::json::parse(run("threshold --batch 1 --jacobian " + file("j.csv")).out);
  EXPECT_REL_NEAR(t["eta_star"].get<double>(), 0.5, 1e-14);
  // rho(T) = (1 - eta 4)^2 exactly: at eta = 0.3, 0.04.
  const CliResult r = run("radius --batch 1 --lr 0.3 --jacobian " + file("j.csv"));
  ASSERT_EQ(r.code, 0) << r.err;
  expect_strict_finite_json(r.out, "radius");
  EXPECT_REL_NEAR(nlohmann::json::parse(r.out)["rho"].get<double>(), 0.04, 1e-12);
  EXPECT_EQ(run("threshold --batch 2 --jacobian " + file("j.csv")).code, 2);  // B outside 1..n
}

TEST_F(Reliability, ScalarOutputWithOneParameter) {
  const MatrixXd j = (MatrixXd(3, 1) << 1.0, -2.0, 0.5).finished();  // n = 3, C = 1, p = 1: rank 1
  sgdstab::write_csv(file("j.csv"), j);
  for (const std::string scheme : {"without", "with", "bernoulli"}) {
    const CliResult r = run("threshold --jacobian " + file("j.csv") + " --batch 1 --sampling " + scheme);
    ASSERT_EQ(r.code, 0) << r.err;
    expect_strict_finite_json(r.out, scheme);
    const double eta = nlohmann::json::parse(r.out)["eta_star"].get<double>();
    const Sampling s = scheme == "without" ? Sampling::without_replacement
                       : scheme == "with"  ? Sampling::with_replacement
                                           : Sampling::bernoulli;
    EXPECT_REL_NEAR(eta, reference_eta(j, 1, 1, s), 1e-12);
    // One sample per step (with or without replacement): the 1-D closed form
    // eta* = 2 E[a_i] / E[a_i^2], a_i = J_i^2.
    const double m1 = (1.0 + 4.0 + 0.25) / 3.0, m2 = (1.0 + 16.0 + 0.0625) / 3.0;
    if (s != Sampling::bernoulli) EXPECT_REL_NEAR(eta, 2.0 * m1 / m2, 1e-12);
  }
}

TEST_F(Reliability, OutputsWithAllZeroJacobians) {
  // C = 2 where output 1's rows are zero: the problem of output 0 alone.
  const MatrixXd j0 = ref::gaussian(5, 7, 1609);  // n = 5, C = 1
  MatrixXd j = MatrixXd::Zero(10, 7);
  for (int i = 0; i < 5; ++i) j.row(2 * i) = j0.row(i);
  sgdstab::write_csv(file("j.csv"), j);
  const CliResult r = run("threshold --jacobian " + file("j.csv") + " --outputs 2 --batch 2");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_strict_finite_json(r.out, "threshold");
  EXPECT_REL_NEAR(nlohmann::json::parse(r.out)["eta_star"].get<double>(),
                  reference_eta(j0, 1, 2, Sampling::without_replacement), 1e-9);
  const CliResult b = run("bounds --jacobian " + file("j.csv") + " --outputs 2 --batch 2");
  ASSERT_EQ(b.code, 0) << b.err;
  expect_strict_finite_json(b.out, "bounds");
  // Every output zero: rank 0, a clear error and nothing on stdout.
  sgdstab::write_csv(file("z.csv"), MatrixXd::Zero(10, 7));
  const CliResult z = run("threshold --jacobian " + file("z.csv") + " --outputs 2 --batch 2");
  EXPECT_EQ(z.code, 2);
  EXPECT_TRUE(z.out.empty());
  EXPECT_NE(z.err.find("rank 0"), std::string::npos) << z.err;
}

TEST_F(Reliability, ExtremeScalesThroughTheProgram) {
  const MatrixXd j = ref::gaussian(8, 6, 1610);
  sgdstab::write_csv(file("j.csv"), j);
  const auto t0 = nlohmann::json::parse(run("threshold --jacobian " + file("j.csv") + " --batch 2").out);
  const double eta0 = t0["eta_star"], frob0 = t0["hessian_frobenius"], trace0 = t0["hessian_trace"];
  for (int k : {-150, 150}) {
    sgdstab::write_npy(file("js.npy"), j * std::pow(10.0, k));
    for (const std::string cmd : {"threshold --batch 2", "bounds --batch 2", "region --batches 1,2,8"}) {
      const CliResult r = run(cmd + " --jacobian " + file("js.npy"));
      ASSERT_EQ(r.code, 0) << cmd << " at 10^" << k << ": " << r.err;
      expect_strict_finite_json(r.out, cmd);
    }
    const auto t = nlohmann::json::parse(run("threshold --batch 2 --jacobian " + file("js.npy")).out);
    EXPECT_REL_NEAR(t["eta_star"].get<double>() * std::pow(10.0, k) * std::pow(10.0, k), eta0, 1e-9);
    // The reported sizes of H in the user's units (|H|_F ~ 1e-300 must not underflow to 0).
    EXPECT_REL_NEAR(t["hessian_frobenius"].get<double>() / std::pow(10.0, k) / std::pow(10.0, k), frob0, 1e-12);
    EXPECT_REL_NEAR(t["hessian_trace"].get<double>() / std::pow(10.0, k) / std::pow(10.0, k), trace0, 1e-12);
  }
}

#endif  // SGDSTAB_CLI_PATH

}  // namespace
