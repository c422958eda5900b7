// The sgdstab program: its JSON contract, and errors on stderr with a
// non-zero exit and nothing on stdout.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <Eigen/Eigenvalues>
#include <Eigen/SVD>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <sstream>
#include <vector>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "reference.hpp"
#include "sgdstab/sgdstab.hpp"
#include "solvers/band_detail.hpp"
#include "temp_files.hpp"

#ifdef SGDSTAB_CLI_PATH
using Eigen::MatrixXd;
using json = nlohmann::json;

namespace {

struct CliRun {
  int code;
  std::string out, err;
};

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sgdstab_cli_XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }
  static std::string slurp(const std::string& path) { return testing_files::read_bytes(path); }
  CliRun run(const std::string& args) const { return run_with("", args); }
  // The program with environment assignments before it ("NAME=value ...").
  CliRun run_with(const std::string& env, const std::string& args) const {
    const std::string cmd = env + " " + SGDSTAB_CLI_PATH + " " + args + " >" + file("out") + " 2>" + file("err");
    const int status = std::system(cmd.c_str());
    return {WEXITSTATUS(status), slurp(file("out")), slurp(file("err"))};
  }
  std::string dir_;
};

TEST_F(Cli, ThresholdJsonMatchesTheLibrary) {
  const MatrixXd J = ref::gaussian(12, 9, 71);  // n = 6, C = 2
  sgdstab::write_csv(file("j.csv"), J);
  sgdstab::write_npy(file("j.npy"), J);
  sgdstab::write_npy(file("k.npy"), J * J.transpose());
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);
  const double expect = sgdstab::stability_threshold(g, 2, sgdstab::Sampling::bernoulli).eta_star;
  for (const std::string in : {"--jacobian " + file("j.csv"), "--jacobian " + file("j.npy"), "--gram " + file("k.npy")}) {
    const CliRun r = run("threshold " + in + " --outputs 2 --batch 2 --sampling bernoulli");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    for (const char* key : {"samples", "outputs", "params", "rank", "batch", "sampling", "eta_star", "eta_gd",
                            "lambda_max", "hessian_frobenius", "hessian_trace", "converged", "matvecs", "method"})
      EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j["samples"], 6);
    EXPECT_EQ(j["outputs"], 2);
    EXPECT_EQ(j["rank"], 9);
    EXPECT_EQ(j["batch"], 2);
    EXPECT_EQ(j["sampling"], "bernoulli");
    EXPECT_EQ(j["converged"], true);
    EXPECT_REL_NEAR(j["eta_star"].get<double>(), expect, 1e-9);
    EXPECT_REL_NEAR(j["eta_gd"].get<double>(), 2.0 / g.lambda_max(), 1e-9);
  }
}

TEST_F(Cli, DeviceIsReportedAndCudaWithoutAGpuIsAUsageError) {
  const MatrixXd J = ref::gaussian(60, 40, 73);  // r = 40: the matrix-free path
  sgdstab::write_npy(file("j.npy"), J);
  const sgdstab::GpuStatus gpu = sgdstab::gpu_status();
  const std::string ran = gpu.usable ? "cuda" : "cpu";
  for (const std::string cmd : {"threshold --batch 4", "curve --batches 1,4", "region --batches 1,4 --sampling with"}) {
    const CliRun cpu = run(cmd + " --jacobian " + file("j.npy") + " --device cpu");
    ASSERT_EQ(cpu.code, 0) << cpu.err;
    EXPECT_EQ(json::parse(cpu.out)["device"], "cpu") << cmd;
    const CliRun aut = run(cmd + " --jacobian " + file("j.npy"));  // --device auto
    ASSERT_EQ(aut.code, 0) << aut.err;
    EXPECT_EQ(json::parse(aut.out)["device"], ran) << cmd;
    const CliRun cuda = run(cmd + " --jacobian " + file("j.npy") + " --device cuda");
    if (gpu.usable) {
      EXPECT_EQ(cuda.code, 0) << cuda.err;
    } else {
      EXPECT_EQ(cuda.code, 2) << cmd;
      EXPECT_TRUE(cuda.out.empty());
      EXPECT_NE(cuda.err.find("device cuda: " + gpu.reason), std::string::npos) << cuda.err;
    }
  }
  EXPECT_EQ(run("threshold --batch 4 --jacobian " + file("j.npy") + " --device tpu").code, 2);
}

// The CUDA runtime and cuBLAS are opened at the first GPU use, never linked
// (issue #32, theory/gpu.md section 4): the dynamic loader's own log
// (LD_DEBUG=files) names every library a run maps, linked or dlopen'ed.
TEST_F(Cli, CudaLibrariesAreOpenedOnlyWhenAGpuIsAskedFor) {
  const MatrixXd J = ref::gaussian(60, 40, 75);  // r = 40: the matrix-free path, where auto asks for a GPU
  sgdstab::write_npy(file("j.npy"), J);
  const std::string in = "threshold --batch 4 --jacobian " + file("j.npy");
  const sgdstab::GpuStatus gpu = sgdstab::gpu_status();
  // --device cpu maps nothing of CUDA, in any build.
  const CliRun plain = run_with("LD_DEBUG=files", in + " --device cpu");
  ASSERT_EQ(plain.code, 0);
  EXPECT_EQ(plain.err.find("libcudart"), std::string::npos) << plain.err.substr(0, 2000);
  EXPECT_EQ(plain.err.find("libcublas"), std::string::npos);
  EXPECT_NE(plain.err.find("file="), std::string::npos) << "LD_DEBUG=files printed nothing: the check is void";
  if (!gpu.built) GTEST_SKIP() << "this build has no CUDA backend";
  // --device cuda opens the runtime; cuBLAS only where a GPU is usable.
  const CliRun cuda = run_with("LD_DEBUG=files", in + " --device cuda");
  EXPECT_NE(cuda.err.find("libcudart"), std::string::npos);
  EXPECT_EQ(cuda.err.find("libcublas") != std::string::npos, gpu.usable);
  // Without the libraries: cuda is a usage error naming the runtime, auto runs on the CPU.
  const std::string none = file("no_cuda");
  ASSERT_EQ(std::system(("mkdir -p " + none).c_str()), 0);
  const std::string env = "SGDSTAB_CUDA_LIB_DIR=" + none;
  const CliRun refused = run_with(env, in + " --device cuda");
  EXPECT_EQ(refused.code, 2);
  EXPECT_TRUE(refused.out.empty());
  EXPECT_NE(refused.err.find("device cuda: no usable GPU: the CUDA runtime (libcudart"), std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("cannot be loaded"), std::string::npos) << refused.err;
  const CliRun aut = run_with(env, in + " --device auto");
  ASSERT_EQ(aut.code, 0) << aut.err;
  EXPECT_EQ(json::parse(aut.out)["device"], "cpu");
  const auto g = sgdstab::Geometry::from_jacobian(J, 1);
  EXPECT_REL_NEAR(json::parse(aut.out)["eta_star"].get<double>(),
                  sgdstab::stability_threshold(g, 4, sgdstab::Sampling::without_replacement).eta_star, 1e-9);
}

TEST_F(Cli, PrecisionIsAnOptionAndReported) {
  const MatrixXd J = ref::gaussian(60, 40, 74);  // r = 40 < 512: double unless asked otherwise
  sgdstab::write_npy(file("j.npy"), J);
  const auto g = sgdstab::Geometry::from_jacobian(J, 1);
  const double expect = sgdstab::stability_threshold(g, 4, sgdstab::Sampling::without_replacement).eta_star;
  for (const std::string precision : {"mixed", "double"}) {
    const CliRun t = run("threshold --batch 4 --device cpu --jacobian " + file("j.npy") + " --precision " + precision);
    ASSERT_EQ(t.code, 0) << t.err;
    const json j = json::parse(t.out);
    EXPECT_EQ(j["matvecs_single_precision"], 0) << precision;
    EXPECT_REL_NEAR(j["eta_star"].get<double>(), expect, 1e-9);
    const CliRun r = run("region --batches 1,4 --device cpu --jacobian " + file("j.npy") + " --precision " + precision);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out)["matvecs_single_precision"], 0) << precision;
  }
  const CliRun bad = run("threshold --batch 4 --jacobian " + file("j.npy") + " --precision half");
  EXPECT_EQ(bad.code, 2);
  EXPECT_TRUE(bad.out.empty());
  EXPECT_NE(bad.err.find("--precision"), std::string::npos) << bad.err;
}

TEST_F(Cli, SolverOptionsComeFromTheTable) {
  // The help of every command with solver options shows each default, as
  // written here from SolverOptions (solver.hpp); a command's narrower words
  // keep the default; the values given reach the solver in its units.
  const CliRun help = run("threshold --help");
  ASSERT_EQ(help.code, 0) << help.err;
  for (const std::string expected :
       {"automatic|dense|lanczos: the eigensolver (default automatic)", "X: relative eigenvalue accuracy (default 1e-10)",
        "K: Lanczos subspace dimension (default 0: min(m, 16) for eta*, min(m, 12) for rho)",
        "past them the result says not_converged (default 1000)", "(default 0: what the system has)",
        "(default auto: the GPU when usable)", "mixed|double: eta*'s first applications in single precision",
        // ReductionOptions' and Momentum's tables
        "X: relative rank cut-off of the Gram spectrum (default 0: 10 max(nC, p) eps)",
        "automatic|parameter|sample: where the reduction is computed (default automatic)",
        "BETA: SGD with momentum: PyTorch's SGD(momentum=BETA), 0 <= BETA < 1 (theory/momentum.md) (default 0)",
        "Nesterov momentum (PyTorch's nesterov=True; needs --momentum / momentum=BETA)"}) {
    EXPECT_NE(help.out.find(expected), std::string::npos) << "threshold --help lacks '" << expected << "':\n" << help.out;
  }
  EXPECT_NE(help.out.find("(r >= 512, CPU) (default mixed)"), std::string::npos) << help.out;
  const CliRun region = run("region --help");
  EXPECT_NE(region.out.find("X: relative width of each certified interval (default 1e-10)"), std::string::npos)
      << region.out;
  EXPECT_NE(region.out.find("K: vectors in the shared subspace (default 0: up to 64, as memory allows)"),
            std::string::npos)
      << region.out;
  const CliRun demo = run("demo --help");
  EXPECT_NE(demo.out.find("--tol"), std::string::npos) << demo.out;
  EXPECT_EQ(demo.out.find("--max-restarts"), std::string::npos) << demo.out;

  const MatrixXd J = ref::gaussian(60, 40, 74);
  sgdstab::write_npy(file("j.npy"), J);
  const std::string t = "threshold --batch 4 --device cpu --jacobian " + file("j.npy");
  const std::pair<std::string, std::string> bad[] = {
      {" --max-restarts 0", "--max-restarts: must be >= 1, got '0'"},
      {" --ncv 2", "--ncv: must be 0 (automatic) or >= 3, got '2'"},
      {" --tol 0.5", "--tol: must satisfy 0 < tolerance < 0.1, got '0.5'"},
      {" --tol abc", "--tol: expected a finite number, got 'abc'"},
      {" --memory-limit -1", "--memory-limit: must be finite and >= 0 (0: what the system has), got '-1'"},
      {" --method magic", "automatic|dense|lanczos"},
      {" --device tpu", "cpu|cuda|auto"},
      {" --rank-tol 1", "--rank-tol: must be finite and < 1, got '1'"},
      {" --space diagonal", "automatic|parameter|sample"},
      {" --momentum 1", "--momentum: must satisfy 0 <= beta < 1, got '1'"},
  };
  for (const auto& [extra, message] : bad) {
    const CliRun r = run(t + extra);
    EXPECT_EQ(r.code, 2) << extra;
    EXPECT_TRUE(r.out.empty()) << extra;
    EXPECT_NE(r.err.find(message), std::string::npos) << extra << " said: " << r.err;
  }
  for (const std::string method : {"dense", "lanczos"}) {
    const CliRun r = run(t + " --method " + method);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out)["method"], method);
  }
  // The JSON echoes the options in effect, every field of the table, the
  // given ones as given (in the struct's units: --memory-limit 1000 MiB in bytes).
  {
    const CliRun r = run(t + " --tol 1e-8 --max-restarts 7 --memory-limit 1000");
    ASSERT_EQ(r.code, 0) << r.err;
    const json o = json::parse(r.out)["options"];
    ASSERT_EQ(o.size(), 11u) << o.dump();
    EXPECT_EQ(o["tolerance"], 1e-8);
    EXPECT_EQ(o["max_iterations"], 7);
    EXPECT_EQ(o["memory_limit_bytes"], 1000.0 * 1024 * 1024);
    EXPECT_EQ(o["method"], "automatic");
    EXPECT_EQ(o["device"], "cpu");
    EXPECT_EQ(o["subspace_dimension"], 0);
    EXPECT_EQ(o["mixed_precision"], true);
    EXPECT_EQ(o["want_direction"], false);
  }
  // --memory-limit counts MiB: 1000 MiB is plenty here, 0.001 MiB (1 KiB) is not.
  EXPECT_EQ(run(t + " --memory-limit 1000").code, 0);
  const CliRun tight = run(t + " --memory-limit 0.001");
  EXPECT_EQ(tight.code, 1) << tight.err;
  EXPECT_TRUE(tight.out.empty());
}

TEST_F(Cli, EscapeAndMonteCarloOptionsComeFromTheirTables) {
  // The help shows each default as written here from escape.hpp and
  // montecarlo.hpp; a value outside a field's rule is a usage error naming
  // the option.
  const CliRun escape = run("escape --help");
  ASSERT_EQ(escape.code, 0) << escape.err;
  for (const std::string expected : {"E: distance of the start from the minimum (default 0.001)",
                                     "R: runs (default 100)", "K: steps per run (default 20000)"})
    EXPECT_NE(escape.out.find(expected), std::string::npos) << "escape --help lacks '" << expected << "'";
  const CliRun mc = run("montecarlo --help");
  ASSERT_EQ(mc.code, 0) << mc.err;
  for (const std::string expected :
       {"T: steps per trajectory (default 50)", "M: trajectories (default 2000)",
        "K: sampled batches or epochs of the operator estimate (default 2000)", "S: random seed (default 0)"})
    EXPECT_NE(mc.out.find(expected), std::string::npos) << "montecarlo --help lacks '" << expected << "'";
  const std::string base = "escape --widths 2,8,1 --activation tanh --data teacher --samples 8 --seed 3 --batch 1 "
                           "--quiet --lr-factor 0.7";
  CliRun r = run(base + " --runs 0");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--runs: must be >= 1, got '0'"), std::string::npos) << r.err;
  r = run(base + " --epsilon -1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--epsilon: must be finite and > 0, got '-1'"), std::string::npos) << r.err;
  sgdstab::write_npy(file("j.npy"), ref::gaussian(8, 5, 3));
  r = run("montecarlo --jacobian " + file("j.npy") + " --batch 2 --lr 0.01 --trajectories 1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--trajectories: must be >= 2, got '1'"), std::string::npos) << r.err;
  // The JSON echoes the options in effect: the given ones, the rest at their defaults.
  r = run("montecarlo --jacobian " + file("j.npy") + " --batch 2 --lr 0.01 --steps 3 --trajectories 30 --blocks 20 "
          "--seed 9 --quiet");
  ASSERT_EQ(r.code, 0) << r.err;
  const json o = json::parse(r.out)["options"];
  EXPECT_EQ(o, json::parse(R"({"steps": 3, "trajectories": 30, "blocks": 20, "seed": 9, "confidence": 0.95,
                               "significance": 0.01})"));
}

TEST_F(Cli, RadiusAndCurve) {
  const MatrixXd J = ref::gaussian(10, 14, 72);
  sgdstab::write_csv(file("j.csv"), J);
  const auto g = sgdstab::Geometry::from_jacobian(J, 1);
  CliRun r = run("radius --jacobian " + file("j.csv") + " --batch 3 --lr 0.5 --sampling with");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  for (const char* key : {"rho", "lr", "batch", "sampling", "converged", "matvecs", "method"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_REL_NEAR(j["rho"].get<double>(), sgdstab::spectral_radius(g, 0.5, 3, sgdstab::Sampling::with_replacement).rho, 1e-9);
  r = run("curve --jacobian " + file("j.csv"));
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["sampling"], "without");
  ASSERT_EQ(j["points"].size(), 5u);  // 1, 2, 4, 8, 10
  EXPECT_EQ(j["points"][4]["batch"], 10);
  EXPECT_REL_NEAR(j["points"][4]["eta_star"].get<double>(), 2.0 / g.lambda_max(), 1e-9);
  r = run("curve --jacobian " + file("j.csv") + " --batches 3,7");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["points"].size(), 2u);
}

TEST_F(Cli, LossCurvatureAndAdaptiveOptimizers) {
  const MatrixXd J = ref::gaussian(12, 5, 74);  // n = 6, C = 2, p = 5
  MatrixXd probs(6, 2);
  for (int i = 0; i < 6; ++i) {
    const double a = 1.0 / (1.0 + std::exp(-0.7 * (i - 2.5)));
    probs.row(i) << a, 1.0 - a;
  }
  Eigen::VectorXd pc(5);
  pc << 0.3, 1.0, 2.5, 0.8, 4.0;
  sgdstab::write_npy(file("cj.npy"), J);
  sgdstab::write_npy(file("ck.npy"), MatrixXd(J * J.transpose()));
  sgdstab::write_npy(file("probs.npy"), probs);
  const MatrixXd S = sgdstab::softmax_curvature(probs);
  sgdstab::write_npy(file("curv.npy"), S);
  sgdstab::write_npy(file("pc.npy"), MatrixXd(pc));
  auto num = [](double x) {
    std::ostringstream o;
    o << std::setprecision(17) << x;
    return o.str();
  };
  const auto gs = sgdstab::Geometry::from_jacobian(sgdstab::apply_curvature_to_jacobian(J, S, 2), 2);
  const double eta_ce = sgdstab::stability_threshold(gs, 2, sgdstab::Sampling::with_replacement).eta_star;
  for (const std::string in : {"--jacobian " + file("cj.npy") + " --softmax " + file("probs.npy"),
                               "--gram " + file("ck.npy") + " --softmax " + file("probs.npy"),
                               "--jacobian " + file("cj.npy") + " --curvature " + file("curv.npy")}) {
    const CliRun r = run("threshold " + in + " --outputs 2 --sampling with --batch 2");
    ASSERT_EQ(r.code, 0) << in << "\n" << r.err;
    const json j = json::parse(r.out);
    EXPECT_REL_NEAR(j["eta_star"].get<double>(), eta_ce, 1e-9) << in;
    EXPECT_EQ(j["loss_curvature"]["kind"], in.find("softmax") != std::string::npos ? "softmax" : "matrix") << in;
  }
  // Adam with a frozen preconditioner, beta1 = 0.9 by default: the library's adam_* on J P^{-1/2}.
  const std::string pre = "--jacobian " + file("cj.npy") + " --outputs 2 --preconditioner " + file("pc.npy");
  const auto gp = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, pc), 2);
  CliRun r = run("threshold " + pre + " --optimizer adam --batch 3");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  const double eta_adam = sgdstab::adam_threshold(gp, 3, sgdstab::Sampling::without_replacement, 0.9).eta_star;
  EXPECT_REL_NEAR(j["eta_star"].get<double>(), eta_adam, 1e-9);
  EXPECT_EQ(j["optimizer"], "adam");
  EXPECT_EQ(j["beta1"].get<double>(), 0.9);
  EXPECT_EQ(j["preconditioner"], file("pc.npy"));
  r = run("radius " + pre + " --optimizer adamw --momentum 0.5 --batch 3 --lr " + num(0.7 * eta_adam));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_REL_NEAR(json::parse(r.out)["rho"].get<double>(),
                  sgdstab::adam_spectral_radius(gp, 0.7 * eta_adam, 3, sgdstab::Sampling::without_replacement, 0.5).rho,
                  1e-9);
  r = run("curve " + pre + " --optimizer rmsprop --batches 1,6 --softmax " + file("probs.npy"));
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  const auto gsp = sgdstab::Geometry::from_jacobian(
      sgdstab::precondition_jacobian(sgdstab::apply_curvature_to_jacobian(J, S, 2), pc), 2);
  EXPECT_REL_NEAR(j["points"][0]["eta_star"].get<double>(),
                  sgdstab::stability_threshold(gsp, 1, sgdstab::Sampling::without_replacement).eta_star, 1e-9);
  EXPECT_EQ(j["optimizer"], "rmsprop");
  // montecarlo with Adam: heavy-ball at lr (1 - beta1), reported in Adam's lr, agreeing below eta*.
  r = run("montecarlo " + pre + " --optimizer adam --momentum 0.5 --sampling with --batch 2 --steps 5 "
          "--trajectories 2000 --blocks 400 --quiet --lr " +
          num(0.8 * sgdstab::adam_threshold(gp, 2, sgdstab::Sampling::with_replacement, 0.5).eta_star));
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["verdict"], "agree");
  EXPECT_REL_NEAR(j["eta_star"].get<double>(),
                  sgdstab::adam_threshold(gp, 2, sgdstab::Sampling::with_replacement, 0.5).eta_star, 1e-8);
  EXPECT_REL_NEAR(j["heavy_ball_lr"].get<double>(), 0.5 * j["lr"].get<double>(), 1e-15);
  EXPECT_REL_NEAR(j["rho"].get<double>(),
                  sgdstab::adam_spectral_radius(gp, j["lr"].get<double>(), 2, sgdstab::Sampling::with_replacement, 0.5)
                      .rho, 1e-9);
  // AdamW's decoupled decay (theory/adaptive.md, section 5): threshold, radius and curve are adamw_*,
  // which tests/test_adaptive.cpp checks against AdamW's enumerated map.
  {
    const double wd = 0.3 * gp.lambda_max();
    const auto t = sgdstab::adamw_threshold(gp, 3, sgdstab::Sampling::with_replacement, 0.5, wd);
    ASSERT_TRUE(t.converged());
    EXPECT_GT(std::abs(t.eta_star / sgdstab::adam_threshold(gp, 3, sgdstab::Sampling::with_replacement, 0.5).eta_star - 1),
              1e-3);  // the decay is felt
    r = run("threshold " + pre + " --optimizer adamw --momentum 0.5 --sampling with --batch 3 --weight-decay " + num(wd));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_REL_NEAR(j["eta_star"].get<double>(), t.eta_star, 1e-9);
    EXPECT_REL_NEAR(j["eta_mean"].get<double>(), t.eta_mean, 1e-12);
    EXPECT_EQ(j["weight_decay"].get<double>(), wd);
    EXPECT_EQ(j["weight_decay_decoupled"], true);
    EXPECT_EQ(j["optimizer"], "adamw");
    r = run("radius " + pre + " --optimizer adamw --momentum 0.5 --sampling with --batch 3 --weight-decay " + num(wd) +
            " --lr " + num(1.2 * t.eta_star));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_REL_NEAR(json::parse(r.out)["rho"].get<double>(),
                    sgdstab::adamw_spectral_radius(gp, 1.2 * t.eta_star, 3, sgdstab::Sampling::with_replacement, 0.5, wd).rho,
                    1e-9);
    r = run("curve " + pre + " --optimizer adamw --momentum 0.5 --sampling with --batches 1,3 --weight-decay " + num(wd));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_REL_NEAR(j["points"][1]["eta_star"].get<double>(), t.eta_star, 1e-7);
    EXPECT_EQ(j["weight_decay_decoupled"], true);
    // montecarlo: the simulated AdamW steps agree with the exact answer (rho, eta*) below eta*.
    r = run("montecarlo " + pre + " --optimizer adamw --momentum 0.5 --sampling with --batch 3 --weight-decay " +
            num(wd) + " --steps 5 --trajectories 2000 --blocks 400 --quiet --lr " + num(0.8 * t.eta_star));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_EQ(j["verdict"], "agree");
    EXPECT_REL_NEAR(j["eta_star"].get<double>(), t.eta_star, 1e-8);
    EXPECT_EQ(j["weight_decay"].get<double>(), wd);
    EXPECT_REL_NEAR(j["heavy_ball_decoupled_weight_decay"].get<double>(), wd / 0.5, 1e-15);
    EXPECT_EQ(j["weight_decay_decoupled"], true);
    EXPECT_REL_NEAR(j["rho"].get<double>(),
                    sgdstab::adamw_spectral_radius(gp, 0.8 * t.eta_star, 3, sgdstab::Sampling::with_replacement, 0.5, wd).rho,
                    1e-9);
    // region: adam_region in Adam's lr, every scheme by default; a mark judged by AdamW's radius.
    r = run("region " + pre + " --optimizer adamw --momentum 0.5 --batches 1,3,6 --weight-decay " + num(wd) +
            " --mark " + num(1.2 * t.eta_star) + ",3");
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    const std::vector<sgdstab::Sampling> all{sgdstab::Sampling::without_replacement, sgdstab::Sampling::with_replacement,
                                             sgdstab::Sampling::bernoulli};
    const auto reg = sgdstab::adam_region(gp, all, {1, 3, 6}, 0.5, wd);
    ASSERT_EQ(j["curves"].size(), 3u);
    EXPECT_REL_NEAR(j["curves"][1]["points"][1]["eta_star"].get<double>(), t.eta_star, 1e-7);  // with replacement, B 3
    for (std::size_t k = 0; k < 3; ++k)
      for (std::size_t q = 0; q < 3; ++q)
        EXPECT_REL_NEAR(j["curves"][k]["points"][q]["eta_star"].get<double>(), reg.curves[k].points[q].eta_star, 1e-12);
    EXPECT_REL_NEAR(j["eta_mean"].get<double>(), reg.eta_mean, 1e-15);
    EXPECT_FALSE(j.contains("eta_gd"));
    EXPECT_EQ(j["optimizer"], "adamw");
    EXPECT_EQ(j["weight_decay_decoupled"], true);
    EXPECT_EQ(j["engine"], "exact");
    r = run("region " + pre + " --optimizer adam --momentum 0 --batches 1,3");
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("RMSProp"), std::string::npos) << r.err;
  }
  // Adam's and RMSProp's own L2 decay (theory/adaptive.md, section 6): threshold, curve, radius, region and
  // montecarlo are adam_l2_*, which tests/test_adaptive.cpp checks against Adam's enumerated map with the decay.
  {
    const double wd = 0.3 * gp.lambda_max();
    const auto t = sgdstab::adam_l2_threshold(J, 2, pc, 3, sgdstab::Sampling::with_replacement, 0.5, wd);
    ASSERT_TRUE(t.converged());
    r = run("threshold " + pre + " --optimizer adam --momentum 0.5 --sampling with --batch 3 --weight-decay " +
            num(wd));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_REL_NEAR(j["eta_star"].get<double>(), t.eta_star, 1e-9);
    EXPECT_REL_NEAR(j["eta_mean"].get<double>(), t.eta_mean, 1e-12);
    EXPECT_EQ(j["weight_decay"].get<double>(), wd);
    EXPECT_FALSE(j.contains("weight_decay_decoupled"));
    EXPECT_FALSE(j.contains("eta_gd"));
    EXPECT_EQ(j["optimizer"], "adam");
    // Not AdamW's answer at the same decay: the L2 decay acts through P^{-1}.
    EXPECT_GT(std::abs(t.eta_star / sgdstab::adamw_threshold(gp, 3, sgdstab::Sampling::with_replacement, 0.5, wd)
                                        .eta_star - 1), 1e-3);
    r = run("curve " + pre + " --optimizer rmsprop --batches 1,3 --weight-decay " + num(wd));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_REL_NEAR(j["points"][1]["eta_star"].get<double>(),
                    sgdstab::adam_l2_threshold(J, 2, pc, 3, sgdstab::Sampling::without_replacement, 0.0, wd).eta_star,
                    1e-7);
    EXPECT_EQ(j["optimizer"], "rmsprop");
    EXPECT_FALSE(j.contains("eta_gd"));
    r = run("radius " + pre + " --optimizer adam --momentum 0.5 --sampling with --batch 3 --weight-decay " + num(wd) +
            " --lr " + num(1.2 * t.eta_star));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_REL_NEAR(j["rho"].get<double>(),
                    sgdstab::adam_l2_spectral_radius(J, 2, pc, 1.2 * t.eta_star, 3, sgdstab::Sampling::with_replacement,
                                                     0.5, wd)
                        .rho,
                    1e-9);
    EXPECT_GT(j["rho"].get<double>(), 1.0);
    EXPECT_EQ(j["weight_decay"].get<double>(), wd);
    // region: adam_l2_region in the optimizer's lr, every scheme by default (Bernoulli included); the marks
    // judged by the whole state's rho; the picture's limit line is the optimizer's.
    r = run("region " + pre + " --optimizer rmsprop --batches 1,3,6 --weight-decay " + num(wd) + " --mark " +
            num(1.2 * t.eta_star) + ",3 --plot " + file("l2_region.svg"));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    const std::vector<sgdstab::Sampling> every(std::begin(ref::kSchemes), std::end(ref::kSchemes));
    const auto l2_region = sgdstab::adam_l2_region(J, 2, pc, every, {1, 3, 6}, 0.0, wd);
    ASSERT_EQ(j["curves"].size(), 3u);
    EXPECT_EQ(j["curves"][2]["sampling"], "bernoulli");
    for (std::size_t k = 0; k < 3; ++k)
      for (std::size_t b = 0; b < 3; ++b)
        EXPECT_REL_NEAR(j["curves"][k]["points"][b]["eta_star"].get<double>(),
                        l2_region.curves[k].points[b].eta_star, 1e-12);
    EXPECT_REL_NEAR(j["eta_mean"].get<double>(), l2_region.eta_mean, 1e-12);
    EXPECT_EQ(j["weight_decay"].get<double>(), wd);
    EXPECT_EQ(j["optimizer"], "rmsprop");
    EXPECT_EQ(j["engine"], "exact");
    EXPECT_FALSE(j.contains("eta_gd"));  // the limit is eta_mean
    ASSERT_EQ(j["marks"].size(), 3u);
    for (std::size_t k = 0; k < 3; ++k)
      EXPECT_REL_NEAR(j["marks"][k]["rho"].get<double>(),
                      sgdstab::adam_l2_spectral_radius(J, 2, pc, 1.2 * t.eta_star, 3, every[k], 0.0, wd).rho, 1e-9);
    // montecarlo: adam_l2_cross_check on the whole 2p state, in the optimizer's lr, agreeing below eta*.
    r = run("montecarlo " + pre + " --optimizer adam --momentum 0.5 --sampling with --batch 3 --steps 5 "
            "--trajectories 4000 --blocks 2000 --quiet --weight-decay " + num(wd) + " --lr " + num(0.8 * t.eta_star));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_EQ(j["verdict"], "agree") << j["reason"];
    EXPECT_REL_NEAR(j["eta_star"].get<double>(), t.eta_star, 1e-9);
    EXPECT_REL_NEAR(j["rho"].get<double>(),
                    sgdstab::adam_l2_spectral_radius(J, 2, pc, 0.8 * t.eta_star, 3, sgdstab::Sampling::with_replacement,
                                                     0.5, wd)
                        .rho,
                    1e-9);
    EXPECT_REL_NEAR(j["heavy_ball_lr"].get<double>(), 0.5 * j["lr"].get<double>(), 1e-15);
    EXPECT_EQ(j["weight_decay"].get<double>(), wd);
    EXPECT_EQ(j["optimizer"], "adam");
    EXPECT_NE(j["note"].get<std::string>().find("phi = P^{1/2} theta"), std::string::npos);
    // Decay 0: Adam's own montecarlo (the reduced coordinates), as threshold takes it.
    r = run("montecarlo " + pre + " --optimizer adam --momentum 0.5 --sampling with --batch 3 --steps 3 "
            "--trajectories 500 --blocks 200 --quiet --weight-decay 0 --lr " + num(0.5 * t.eta_star));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_REL_NEAR(json::parse(r.out)["eta_star"].get<double>(),
                    sgdstab::adam_threshold(gp, 3, sgdstab::Sampling::with_replacement, 0.5).eta_star, 1e-8);
    std::ifstream l2_svg(file("l2_region.svg"));
    EXPECT_NE(std::string(std::istreambuf_iterator<char>(l2_svg), std::istreambuf_iterator<char>())
                  .find("full-batch RMSProp limit"),
              std::string::npos);
    for (const auto& [cmd, needle] : std::vector<std::pair<std::string, std::string>>{
             {"region " + pre + " --optimizer adam --weight-decay 0.1 --engine band",
              "not --optimizer adam --weight-decay's"},
             {"region --gram " + file("ck.npy") + " --outputs 2 --optimizer adam --weight-decay 0.1 "
              "--preconditioner " + file("pc.npy"), "needs --jacobian FILE (not --gram)"},
             {"covariance " + pre + " --optimizer rmsprop --batch 2 --lr 0.1 --weight-decay 0.1 --residual " +
                  file("cj.npy"), "not on covariance"},
             {"montecarlo --gram " + file("ck.npy") + " --outputs 2 --optimizer adam --weight-decay 0.1 --batch 2 "
              "--lr 0.1 --preconditioner " + file("pc.npy"), "needs --jacobian FILE (not --gram)"},
             {"threshold " + pre + " --optimizer rmsprop --momentum 0.5 --batch 2 --weight-decay 0.1", "not covered"},
             {"threshold --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --optimizer adam --weight-decay 0.1",
              "needs --preconditioner"},
             {"threshold --gram " + file("ck.npy") + " --outputs 2 --batch 2 --optimizer adam --weight-decay 0.1 "
              "--preconditioner " + file("pc.npy"), "needs --jacobian FILE (not --gram)"}}) {
      r = run(cmd);
      EXPECT_EQ(r.code, 2) << cmd;
      EXPECT_NE(r.err.find(needle), std::string::npos) << cmd << "\n" << r.err;
    }
  }
  // covariance from parameter-space gradients with the softmax's curvature: g_i = J_i^T a_i (1, -1), in
  // range(S_i^{1/2}), with sum g_i = 0 (a in the null space of the 5 x 6 matrix of the J_i^T (1, -1)).
  {
    MatrixXd m(5, 6);
    for (int i = 0; i < 6; ++i) m.col(i) = J.row(2 * i).transpose() - J.row(2 * i + 1).transpose();
    const Eigen::JacobiSVD<MatrixXd> svd(m, Eigen::ComputeFullV);
    const Eigen::VectorXd a = svd.matrixV().col(5);
    MatrixXd grads(6, 5);
    for (int i = 0; i < 6; ++i) grads.row(i) = a(i) * m.col(i).transpose();
    sgdstab::write_npy(file("grads.npy"), grads);
    const MatrixXd jc = sgdstab::apply_curvature_to_jacobian(J, S, 2);
    const auto gc = sgdstab::Geometry::from_jacobian(jc, 2);
    const double lr = 0.5 * sgdstab::stability_threshold(gc, 2, sgdstab::Sampling::with_replacement).eta_star;
    const auto want = sgdstab::stationary_covariance_from_gradients(gc, sgdstab::reduced_gradients(gc, jc, grads), lr,
                                                                    2, sgdstab::Sampling::with_replacement);
    r = run("covariance --jacobian " + file("cj.npy") + " --outputs 2 --softmax " + file("probs.npy") +
            " --residual-gradients " + file("grads.npy") + " --sampling with --batch 2 --lr " + num(lr));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_REL_NEAR(j["trace"].get<double>(), want.trace, 1e-10);
    EXPECT_GT(want.trace, 0.0);
    EXPECT_EQ(j["loss_curvature"]["kind"], "softmax");
  }
  // covariance --residual: one column, or n x C with sample i in row i (the same vector).
  {
    const Eigen::VectorXd yv = ref::gaussian(12, 1, 75).col(0);
    const Eigen::VectorXd res = J * (J.transpose() * J).ldlt().solve(J.transpose() * yv) - yv;
    sgdstab::write_npy(file("res_col.npy"), MatrixXd(res));
    MatrixXd by_sample(6, 2);
    for (int i = 0; i < 6; ++i) by_sample.row(i) = res.segment(2 * i, 2).transpose();
    sgdstab::write_npy(file("res_nc.npy"), by_sample);
    const auto g0 = sgdstab::Geometry::from_jacobian(J, 2);
    const double lr = 0.5 * sgdstab::stability_threshold(g0, 2, sgdstab::Sampling::without_replacement).eta_star;
    const double want = sgdstab::stationary_covariance(g0, res, lr, 2).trace;
    for (const char* f : {"res_col.npy", "res_nc.npy"}) {
      r = run("covariance --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --lr " + num(lr) + " --residual " +
              file(f));
      ASSERT_EQ(r.code, 0) << f << "\n" << r.err;
      EXPECT_REL_NEAR(json::parse(r.out)["trace"].get<double>(), want, 1e-10) << f;
    }
    // --momentum: momentum SGD's stationary covariance (theory/covariance.md, section 7).
    sgdstab::CovarianceOptions mo;
    mo.momentum = sgdstab::Momentum{0.5, true};
    const double lr_m = 0.5 * sgdstab::momentum_threshold(g0, 2, sgdstab::Sampling::without_replacement, mo.momentum).eta_star;
    const auto want_m = sgdstab::stationary_covariance(g0, res, lr_m, 2, sgdstab::Sampling::without_replacement, mo);
    r = run("covariance --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --lr " + num(lr_m) + " --residual " +
            file("res_col.npy") + " --momentum 0.5 --nesterov");
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_REL_NEAR(j["trace"].get<double>(), want_m.trace, 1e-10);
    EXPECT_EQ(j["momentum"].get<double>(), 0.5);
    EXPECT_EQ(j["nesterov"], true);
    EXPECT_GT(std::abs(want_m.trace / sgdstab::stationary_covariance(g0, res, lr_m, 2).trace - 1), 1e-3);
    // --weight-decay with --theta at the ridge minimum (theory/covariance.md, section 8): the library's answer.
    const double wd = 0.3 * g0.lambda_max();
    const Eigen::VectorXd theta =
        (J.transpose() * J / 6.0 + wd * MatrixXd::Identity(5, 5)).ldlt().solve(J.transpose() * yv / 6.0);
    const Eigen::VectorXd res_wd = J * theta - yv;
    sgdstab::write_npy(file("theta.npy"), MatrixXd(theta));
    sgdstab::write_npy(file("res_wd.npy"), MatrixXd(res_wd));
    sgdstab::CovarianceOptions wo;
    wo.weight_decay = wd;
    wo.parameters = sgdstab::reduced_parameters(g0, J, theta);
    const double lr_w = 0.5 * sgdstab::weight_decay_threshold(g0, 2, sgdstab::Sampling::bernoulli, wd).eta_star;
    const auto want_w = sgdstab::stationary_covariance(g0, res_wd, lr_w, 2, sgdstab::Sampling::bernoulli, wo);
    const std::string wcmd = "covariance --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --sampling bernoulli --lr " +
                             num(lr_w) + " --residual " + file("res_wd.npy");
    r = run(wcmd + " --weight-decay " + num(wd) + " --theta " + file("theta.npy"));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_REL_NEAR(j["trace"].get<double>(), want_w.trace, 1e-10);
    EXPECT_REL_NEAR(j["excess_loss"].get<double>(), want_w.excess_loss, 1e-10);
    EXPECT_EQ(j["weight_decay"].get<double>(), wd);
    EXPECT_NE(j["definition"].get<std::string>().find("weight_decay theta*"), std::string::npos);
    EXPECT_LT(j["mean_gradient_norm"].get<double>(), 1e-12);  // the penalized loss's gradient
    // With --momentum too: the library's answer with both.
    wo.momentum = sgdstab::Momentum{0.5, false};
    const double lr_wm =
        0.5 * sgdstab::weight_decay_momentum_threshold(g0, 2, sgdstab::Sampling::bernoulli, wo.momentum, wd).eta_star;
    const auto want_wm = sgdstab::stationary_covariance(g0, res_wd, lr_wm, 2, sgdstab::Sampling::bernoulli, wo);
    r = run("covariance --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --sampling bernoulli --lr " +
            num(lr_wm) + " --residual " + file("res_wd.npy") + " --weight-decay " + num(wd) + " --theta " +
            file("theta.npy") + " --momentum 0.5");
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_REL_NEAR(j["trace"].get<double>(), want_wm.trace, 1e-10);
    EXPECT_EQ(j["momentum"].get<double>(), 0.5);
    // --optimizer adam --preconditioner P: theta's covariance of Adam's own linearized step, state (delta, m),
    // M_B = [[I - lr (1 - b1) P^-1 H_B, -lr b1 P^-1], [(1 - b1) H_B, b1 I]], noise [-lr (1 - b1) P^-1 g_B,
    // (1 - b1) g_B], enumerated over the 36 ordered batches of 2 with replacement (library units).
    {
      const Eigen::VectorXd pre = (ref::gaussian(5, 1, 77).col(0).array().exp() * 0.5).matrix();
      sgdstab::write_npy(file("pre5.npy"), MatrixXd(pre));
      const double b1 = 0.5;
      const auto gp = sgdstab::Geometry::from_jacobian(sgdstab::precondition_jacobian(J, pre), 2);
      const double lr_a =
          0.6 * sgdstab::adam_threshold(gp, 2, sgdstab::Sampling::with_replacement, b1).eta_star;
      std::vector<MatrixXd> hs, gs;
      for (int i = 0; i < 6; ++i) {
        hs.push_back(J.middleRows(2 * i, 2).transpose() * J.middleRows(2 * i, 2));
        gs.push_back(J.middleRows(2 * i, 2).transpose() * res.segment(2 * i, 2));
      }
      // theta's stationary covariance of (Adam)W's enumerated step at lr with decoupled decay wd_a, per-sample
      // gradients gi (their mean removed: the buffer's noise about its fixed point).
      auto adam_enumerated = [&](double lr, double wd_a, const std::vector<MatrixXd>& gi) {
        const Eigen::Index q = 10;
        const MatrixXd pinv = pre.cwiseInverse().asDiagonal();
        MatrixXd gbar = MatrixXd::Zero(5, 1);
        for (const MatrixXd& x : gi) gbar += x / 6.0;
        MatrixXd emm = MatrixXd::Zero(q * q, q * q), ecc = MatrixXd::Zero(q, q);
        for (int i = 0; i < 6; ++i)
          for (int k = 0; k < 6; ++k) {
            const MatrixXd hb = (hs[i] + hs[k]) / 2.0, xi = (gi[i] + gi[k]) / 2.0 - gbar;
            MatrixXd m(q, q);
            m << (1 - lr * wd_a) * MatrixXd::Identity(5, 5) - lr * (1 - b1) * pinv * hb, -lr * b1 * pinv,
                (1 - b1) * hb, b1 * MatrixXd::Identity(5, 5);
            Eigen::VectorXd cb(q);
            cb << -lr * (1 - b1) * pinv * xi, (1 - b1) * xi;
            for (Eigen::Index a = 0; a < q; ++a)  // E[M (x) M], column-major vec
              for (Eigen::Index c2 = 0; c2 < q; ++c2) emm.block(c2 * q, a * q, q, q) += m(c2, a) * m / 36.0;
            ecc += cb * cb.transpose() / 36.0;
          }
        const Eigen::VectorXd z = (MatrixXd::Identity(q * q, q * q) - emm).partialPivLu().solve(
            Eigen::Map<const Eigen::VectorXd>(ecc.data(), q * q));
        const MatrixXd sd = Eigen::Map<const MatrixXd>(z.data(), q, q).topLeftCorner(5, 5);
        return MatrixXd(0.5 * (sd + sd.transpose()));
      };
      const MatrixXd sym = adam_enumerated(lr_a, 0.0, gs);
      const Eigen::VectorXd ev = Eigen::SelfAdjointEigenSolver<MatrixXd>(sym).eigenvalues().reverse();
      r = run("covariance --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --sampling with --lr " + num(lr_a) +
              " --residual " + file("res_col.npy") + " --optimizer adam --momentum 0.5 --preconditioner " +
              file("pre5.npy"));
      ASSERT_EQ(r.code, 0) << r.err;
      j = json::parse(r.out);
      EXPECT_REL_NEAR(j["trace"].get<double>(), sym.trace(), 1e-8);
      EXPECT_REL_NEAR(j["trace_preconditioned"].get<double>(), (pre.asDiagonal() * sym).trace(), 1e-8);
      EXPECT_REL_NEAR(j["excess_loss"].get<double>(), 0.5 * (J.transpose() * J / 6.0 * sym).trace(), 1e-8);
      ASSERT_EQ(j["top_eigenvalues"].size(), 5u);
      for (int k = 0; k < 5; ++k)
        EXPECT_NEAR(j["top_eigenvalues"][k].get<double>(), ev(k), 1e-8 * ev(0)) << k;
      EXPECT_EQ(j["lr"].get<double>(), lr_a);
      EXPECT_EQ(j["optimizer"], "adam");
      // Parameter-space gradients give the same; the errors by name.
      MatrixXd grads(6, 5);
      for (int i = 0; i < 6; ++i) grads.row(i) = gs[i].transpose();
      sgdstab::write_npy(file("gs5.npy"), grads);
      r = run("covariance --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --sampling with --lr " + num(lr_a) +
              " --residual-gradients " + file("gs5.npy") + " --optimizer adam --momentum 0.5 --preconditioner " +
              file("pre5.npy"));
      ASSERT_EQ(r.code, 0) << r.err;
      EXPECT_REL_NEAR(json::parse(r.out)["trace"].get<double>(), sym.trace(), 1e-8);
      // AdamW at its fixed point grad + wd P theta* = 0: (H + wd P) theta* = J^T y / n.
      const double wd_a = 0.3 * g0.lambda_max();
      const Eigen::VectorXd theta_a =
          (J.transpose() * J / 6.0 + wd_a * MatrixXd(pre.asDiagonal())).ldlt().solve(J.transpose() * yv / 6.0);
      const Eigen::VectorXd res_a = J * theta_a - yv;
      sgdstab::write_npy(file("theta_a.npy"), MatrixXd(theta_a));
      sgdstab::write_npy(file("res_a.npy"), MatrixXd(res_a));
      std::vector<MatrixXd> ga;
      for (int i = 0; i < 6; ++i) ga.push_back(J.middleRows(2 * i, 2).transpose() * res_a.segment(2 * i, 2));
      const double lr_w2 =
          0.6 * sgdstab::adamw_threshold(gp, 2, sgdstab::Sampling::with_replacement, b1, wd_a).eta_star;
      const MatrixXd sym_w = adam_enumerated(lr_w2, wd_a, ga);
      r = run("covariance --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --sampling with --lr " +
              num(lr_w2) + " --residual " + file("res_a.npy") + " --optimizer adamw --momentum 0.5 --preconditioner " +
              file("pre5.npy") + " --weight-decay " + num(wd_a) + " --theta " + file("theta_a.npy"));
      ASSERT_EQ(r.code, 0) << r.err;
      j = json::parse(r.out);
      EXPECT_REL_NEAR(j["trace"].get<double>(), sym_w.trace(), 1e-8);
      EXPECT_REL_NEAR(j["trace_preconditioned"].get<double>(), (pre.asDiagonal() * sym_w).trace(), 1e-8);
      EXPECT_EQ(j["weight_decay"].get<double>(), wd_a);
      EXPECT_EQ(j["weight_decay_decoupled"], true);
      for (const auto& [extra, needle] : std::vector<std::pair<std::string, std::string>>{
               {" --optimizer adam", "needs --jacobian and --preconditioner"},
               {" --optimizer adamw --preconditioner " + file("pre5.npy") + " --weight-decay 0.1", "needs --theta"},
               {" --optimizer adamw --preconditioner " + file("pre5.npy") + " --weight-decay " + num(wd_a) +
                    " --theta " + file("theta.npy"),
                "not a minimum of the regularized loss"},
               {" --optimizer rmsprop --preconditioner " + file("pre5.npy") + " --weight-decay 0.1", "--weight-decay"}}) {
        r = run("covariance --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --lr " + num(lr_a) +
                " --residual " + file("res_col.npy") + extra);
        EXPECT_EQ(r.code, 2) << extra;
        EXPECT_NE(r.err.find(needle), std::string::npos) << extra << "\n" << r.err;
      }
    }
    // Its errors, each by name.
    for (const auto& [extra, needle] : std::vector<std::pair<std::string, std::string>>{
             {" --weight-decay " + num(wd), "--weight-decay needs --theta"},
             {" --theta " + file("theta.npy"), "--theta is the minimum of the regularized loss"},
             {" --weight-decay " + num(2 * wd) + " --theta " + file("theta.npy"), "not a minimum of the regularized loss"},
             {" --weight-decay " + num(wd) + " --theta " + file("res_nc.npy"), "--theta: expected p = 5 values"}}) {
      r = run(wcmd + extra);
      EXPECT_NE(r.code, 0) << extra;
      EXPECT_NE(r.err.find(needle), std::string::npos) << extra << "\n" << r.err;
    }
    r = run("covariance --gram " + file("ck.npy") + " --outputs 2 --batch 2 --lr " + num(lr_w) + " --residual " +
            file("res_wd.npy") + " --weight-decay " + num(wd) + " --theta " + file("theta.npy"));
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("--weight-decay needs --jacobian"), std::string::npos) << r.err;
  }
  // Without the options the JSON has none of their keys (and is today's answer).
  j = json::parse(run("threshold --jacobian " + file("cj.npy") + " --outputs 2 --batch 3").out);
  EXPECT_FALSE(j.contains("loss_curvature") || j.contains("optimizer") || j.contains("preconditioner"));
  struct Bad {
    std::string args, needle;
  };
  const std::vector<Bad> bad = {
      {"threshold --gram " + file("ck.npy") + " --outputs 2 --batch 2 --optimizer adam --preconditioner " +
           file("pc.npy"), "fold it into the Gram"},
      {"threshold " + pre + " --batch 2", "--preconditioner is for --optimizer"},
      {"threshold " + pre + " --batch 2 --optimizer adam --nesterov --momentum 0.9", "--nesterov"},
      {"covariance " + pre + " --batch 2 --lr 0.1 --optimizer adam --weight-decay 0.1 --residual " + file("cj.npy"),
       "not on covariance"},
      {"threshold " + pre + " --batch 2 --optimizer adam --momentum 1", "beta1"},
      {"threshold " + pre + " --batch 2 --optimizer lion", "sgd|rmsprop|adam|adamw"},
      {"region " + pre + " --optimizer adam --engine band", "not --optimizer adam's"},
      {"threshold --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --softmax " + file("curv.npy"),
       "n x C"},
      {"threshold --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --curvature " + file("probs.npy"),
       "(n C) x C"},
      {"threshold --jacobian " + file("cj.npy") + " --outputs 2 --batch 2 --curvature " + file("curv.npy") +
           " --softmax " + file("probs.npy"), "at most one"},
      {"alignment --jacobian " + file("cj.npy") + " --outputs 2 --residual " + file("pc.npy") + " --softmax " +
           file("probs.npy"), "not available in alignment"},
      {"covariance --jacobian " + file("cj.npy") + " --outputs 2 --lr 0.1 --batch 2", "--residual"},
      {"covariance --jacobian " + file("cj.npy") + " --outputs 2 --lr 0.1 --batch 2 --residual " + file("pc.npy") +
           " --softmax " + file("probs.npy"), "need --residual-gradients"},
      {"covariance --gram " + file("ck.npy") + " --outputs 2 --lr 0.1 --batch 2 --residual-gradients " +
           file("pc.npy"), "needs --jacobian"},
      {"covariance --jacobian " + file("cj.npy") + " --outputs 2 --lr 0.1 --batch 2 --residual-gradients " +
           file("pc.npy"), "n x p = 6 x 5"},
      {"covariance --jacobian " + file("cj.npy") + " --outputs 2 --lr 0.1 --batch 2 --residual " + file("pc.npy"),
       "n C = 12"},
  };
  for (const Bad& b : bad) {
    const CliRun e = run(b.args);
    EXPECT_EQ(e.code, 2) << b.args << "\n" << e.err;
    EXPECT_TRUE(e.out.empty()) << b.args;
    EXPECT_NE(e.err.find(b.needle), std::string::npos) << b.args << "\n" << e.err;
  }
}

TEST_F(Cli, WeightDecayOnThresholdRadiusAndCurve) {
  const MatrixXd J = ref::gaussian(12, 9, 73);  // n = 6, C = 2
  sgdstab::write_npy(file("j.npy"), J);
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);
  const std::string in = "--jacobian " + file("j.npy") + " --outputs 2 --sampling bernoulli ";
  const double lambda = 0.25 * g.lambda_max();
  auto num = [](double x) {
    std::ostringstream o;
    o << std::setprecision(17) << x;
    return o.str();
  };
  const std::string wd = " --weight-decay " + num(lambda);
  CliRun r = run("threshold " + in + "--batch 2" + wd);
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  const double eta = sgdstab::weight_decay_threshold(g, 2, sgdstab::Sampling::bernoulli, lambda).eta_star;
  EXPECT_REL_NEAR(j["eta_star"].get<double>(), eta, 1e-9);
  EXPECT_REL_NEAR(j["weight_decay"].get<double>(), lambda, 1e-15);
  EXPECT_REL_NEAR(j["eta_gd"].get<double>(), 2.0 / (g.lambda_max() + lambda), 1e-12);
  // Without the option: plain SGD, and the JSON says weight_decay 0.
  j = json::parse(run("threshold " + in + "--batch 2").out);
  EXPECT_EQ(j["weight_decay"].get<double>(), 0.0);
  EXPECT_REL_NEAR(j["eta_star"].get<double>(), sgdstab::stability_threshold(g, 2, sgdstab::Sampling::bernoulli).eta_star, 1e-9);
  r = run("radius " + in + "--batch 2 --lr " + num(0.9 * eta) + wd);
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_LT(j["rho"].get<double>(), 1.0);
  EXPECT_REL_NEAR(j["rho"].get<double>(),
                  sgdstab::weight_decay_spectral_radius(g, 0.9 * eta, 2, sgdstab::Sampling::bernoulli, lambda).rho, 1e-9);
  EXPECT_REL_NEAR(j["weight_decay"].get<double>(), lambda, 1e-15);
  r = run("curve " + in + "--batches 1,2,6" + wd);
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_REL_NEAR(j["weight_decay"].get<double>(), lambda, 1e-15);
  ASSERT_EQ(j["points"].size(), 3u);
  EXPECT_REL_NEAR(j["points"][1]["eta_star"].get<double>(), eta, 1e-9);
  EXPECT_REL_NEAR(j["points"][2]["eta_star"].get<double>(), 2.0 / (g.lambda_max() + lambda), 1e-9);  // B = n: GD
  // The region: without and with replacement, exact engine, marks judged with weight decay.
  r = run("region --jacobian " + file("j.npy") + " --outputs 2 --sampling without,with --batches 1,2,6 --mark " +
          num(0.9 * eta) + ",2" + wd);
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["engine"], "exact");
  EXPECT_REL_NEAR(j["weight_decay"].get<double>(), lambda, 1e-15);
  EXPECT_REL_NEAR(j["eta_gd"].get<double>(), 2.0 / (g.lambda_max() + lambda), 1e-12);
  EXPECT_REL_NEAR(j["curves"][1]["points"][1]["eta_star"].get<double>(),
                  sgdstab::weight_decay_threshold(g, 2, sgdstab::Sampling::with_replacement, lambda).eta_star, 1e-9);
  EXPECT_REL_NEAR(j["marks"][1]["rho"].get<double>(),
                  sgdstab::weight_decay_spectral_radius(g, 0.9 * eta, 2, sgdstab::Sampling::with_replacement, lambda).rho,
                  1e-9);
  for (const auto& [bad, named] : std::vector<std::pair<std::string, std::string>>{
           {" --sampling bernoulli", "Bernoulli"}, {" --sampling without,with --engine band", "--engine band"}}) {
    r = run("region --jacobian " + file("j.npy") + " --outputs 2" + wd + bad);
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_TRUE(r.out.empty()) << bad;
    EXPECT_NE(r.err.find(named), std::string::npos) << bad << ": " << r.err;
  }
  // Without --sampling a region with weight decay is without and with replacement.
  r = run("region --jacobian " + file("j.npy") + " --outputs 2 --batches 2,6" + wd);
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  ASSERT_EQ(j["curves"].size(), 2u);
  EXPECT_EQ(j["curves"][0]["sampling"], "without");
  EXPECT_EQ(j["curves"][1]["sampling"], "with");
  // montecarlo: every part with weight decay, and the verdict agrees below eta*.
  const double eta_with = sgdstab::weight_decay_threshold(g, 2, sgdstab::Sampling::with_replacement, lambda).eta_star;
  r = run("montecarlo " + in.substr(0, in.find("--sampling")) + "--sampling with --batch 2 --lr " + num(0.8 * eta_with) +
          " --steps 5 --trajectories 4000 --blocks 400 --quiet" + wd);
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_REL_NEAR(j["weight_decay"].get<double>(), lambda, 1e-15);
  EXPECT_REL_NEAR(j["eta_star"].get<double>(), eta_with, 1e-9);
  EXPECT_REL_NEAR(j["rho"].get<double>(),
                  sgdstab::weight_decay_spectral_radius(g, 0.8 * eta_with, 2, sgdstab::Sampling::with_replacement, lambda).rho,
                  1e-9);
  EXPECT_EQ(j["verdict"], "agree");
  // With --momentum: the buffer takes g + lambda theta (theory/momentum.md, section 8).
  const sgdstab::Momentum mo{0.5, false};
  r = run("threshold " + in + "--batch 2 --momentum 0.5" + wd);
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  const auto mwd = sgdstab::weight_decay_momentum_threshold(g, 2, sgdstab::Sampling::bernoulli, mo, lambda);
  EXPECT_REL_NEAR(j["eta_star"].get<double>(), mwd.eta_star, 1e-12);
  EXPECT_REL_NEAR(j["eta_mean"].get<double>(), 3.0 / (g.lambda_max() + lambda), 1e-12);  // 2 (1 + beta) / (lambda_max + lambda)
  EXPECT_REL_NEAR(j["weight_decay"].get<double>(), lambda, 1e-15);
  EXPECT_GT(std::abs(mwd.eta_star / sgdstab::momentum_threshold(g, 2, sgdstab::Sampling::bernoulli, mo).eta_star - 1), 1e-3);
  r = run("radius " + in + "--batch 2 --momentum 0.5 --lr " + num(0.9 * mwd.eta_star) + wd);
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_REL_NEAR(j["weight_decay"].get<double>(), lambda, 1e-15);
  EXPECT_LT(j["rho"].get<double>(), 1.0);
  r = run("curve " + in + "--batches 1,2 --momentum 0.5" + wd);
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_REL_NEAR(j["points"][1]["eta_star"].get<double>(), mwd.eta_star, 1e-9);
  EXPECT_REL_NEAR(j["weight_decay"].get<double>(), lambda, 1e-15);
  // The momentum region takes every scheme by default, Bernoulli included.
  r = run("region --jacobian " + file("j.npy") + " --outputs 2 --batches 2,6 --momentum 0.5" + wd);
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  ASSERT_EQ(j["curves"].size(), 3u);
  EXPECT_EQ(j["curves"][2]["sampling"], "bernoulli");
  EXPECT_REL_NEAR(j["curves"][2]["points"][0]["eta_star"].get<double>(), mwd.eta_star, 1e-9);
  EXPECT_REL_NEAR(j["weight_decay"].get<double>(), lambda, 1e-15);
  for (const std::string& bad : std::vector<std::string>{" --weight-decay -0.1", " --weight-decay nan", " --weight-decay x",
                                " --weight-decay -1 --momentum 0.5"}) {
    r = run("threshold " + in + "--batch 2" + bad);
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_TRUE(r.out.empty()) << bad;
    EXPECT_NE(r.err.find("--weight-decay"), std::string::npos) << bad << ": " << r.err;
  }
}

TEST_F(Cli, ErrorsGoToStderrWithNonZeroExitAndEmptyStdout) {
  sgdstab::write_csv(file("j.csv"), ref::gaussian(6, 4, 73));
  std::ofstream(file("ragged.csv")) << "1,2\n3\n";
  std::ofstream(file("trunc.npy")) << "\x93NUMPY";
  const std::string j = " --jacobian " + file("j.csv");
  const std::pair<std::string, std::string> cases[] = {
      {"threshold" + j + " --batch 0", "1 <= B <= n = 6"},
      {"threshold" + j + " --batch 7", "1 <= B <= n = 6"},
      {"threshold" + j + " --batch two", "expected an integer"},
      {"threshold" + j, "missing required option --batch"},
      {"threshold" + j + " --outputs 4 --batch 1", "not divisible by outputs C = 4"},
      {"threshold" + j + " --batch 1 --sampling sometimes", "without|with|bernoulli"},
      {"radius" + j + " --batch 1 --lr -1", "learning rate must be > 0"},
      {"radius" + j + " --batch 1 --lr nan", "expected a finite number"},
      {"threshold --jacobian " + file("ragged.csv") + " --batch 1", "ragged"},
      {"threshold --jacobian " + file("trunc.npy") + " --batch 1", "not a valid .npy"},
      {"threshold --jacobian " + file("none.csv") + " --batch 1", "cannot open"},
      {"threshold --gram " + file("j.csv") + " --batch 1", "must be square"},
      {"threshold --batch 1", "exactly one of --jacobian"},
      {"threshold" + j + " --batch 1 --bogus 3", "unknown option --bogus"},
      {"frobnicate", "unknown command"},
      {"", "no command"},
  };
  for (const auto& [args, msg] : cases) {
    const CliRun r = run(args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_TRUE(r.out.empty()) << args << " printed: " << r.out;
    EXPECT_NE(r.err.find(msg), std::string::npos) << args << " said: " << r.err;
  }
}

// Defects found when the program was tried as a new user would (issue #11):
// --k=v obeys the same rules as --k v, "K >= 1" rejects 0, a failed write is
// not "cannot read input", and every result says its status.
TEST_F(Cli, OptionSpellingsAndStatusReporting) {
  sgdstab::write_csv(file("j.csv"), ref::gaussian(6, 4, 74));
  const std::string j = " --jacobian " + file("j.csv");
  struct Case {
    std::string args, needle;
    int code;
  };
  const Case cases[] = {
      {"threshold" + j + " --batch=2 --batch 3", "--batch given twice", 2},
      {"threshold" + j + " --batch 2 --batch=3", "--batch given twice", 2},
      {"threshold" + j + " --batch=2 --batch=2", "--batch given twice", 2},
      {"threshold" + j + " --=2 --batch 1", "no option name", 2},
      {"minimum --widths 1,1 --data curvatures:1,4 --bias=yes", "--bias is a flag and takes no value", 2},
      {"minimum --widths 1,1 --data curvatures:1,4 --bias --bias", "--bias given twice", 2},
      {"minimum --widths 1,1 --data curvatures:1,4 --trainer gd --lr 0.1 --alignment-log " + file("a.csv") +
           " --log-every 0",
       "--log-every: K must be >= 1, got 0", 2},
      {"threshold" + j + " --batch 2 --direction /nonexistent_dir/d.csv", "cannot open for writing", 1},
      // Relations declared on the options (CLI11), not checked by hand.
      {"threshold" + j + " --gram " + file("j.csv") + " --batch 1", "excludes", 2},
      {"alignment" + j + " --residual " + file("j.csv") + " --direction " + file("j.csv"), "excludes", 2},
      {"escape --widths 1,1 --data curvatures:1,4 --batch 1 --lr 1 --lr-factor 0.5", "excludes", 2},
      {"threshold" + j + " --batch 1 --runs 3", "unknown option --runs for 'threshold'", 2},
      {"threshold" + j + " --batch 1 stray", "unexpected argument 'stray'", 2},
  };
  for (const Case& c : cases) {
    const CliRun r = run(c.args);
    EXPECT_EQ(r.code, c.code) << c.args << "\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << c.args;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(r.err.find("cannot read input"), std::string::npos) << c.args << "\n" << r.err;
  }
  // Help is generated from the declared options, on stdout, exit 0.
  for (const std::string cmd : {"--help", "threshold --help", "montecarlo --help"}) {
    const CliRun h = run(cmd);
    EXPECT_EQ(h.code, 0) << cmd << "\n" << h.err;
    EXPECT_NE(h.out.find("Usage: sgdstab"), std::string::npos) << h.out;
    EXPECT_NE(h.out.find("exit codes:"), std::string::npos) << h.out;
  }
  EXPECT_NE(run("threshold --help").out.find("--batch"), std::string::npos);
  EXPECT_NE(run("--help").out.find("montecarlo"), std::string::npos);
#ifdef SGDSTAB_CLI_HAS_CNN
  const CliRun needs = run("cnn train --lr 0.1 --batch 2 --checkpoint-every 5");
  EXPECT_EQ(needs.code, 2);
  EXPECT_NE(needs.err.find("--checkpoint"), std::string::npos) << needs.err;
#endif
  // --k=v is accepted where --k v is, with the same result.
  CliRun a = run("threshold" + j + " --batch=2 --sampling=with");
  CliRun b = run("threshold" + j + " --batch 2 --sampling with");
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(json::parse(a.out)["eta_star"], json::parse(b.out)["eta_star"]);
  EXPECT_EQ(json::parse(a.out)["status"], "converged");
  // The points of a curve carry their status.
  const CliRun c = run("curve" + j + " --batches 1,6");
  ASSERT_EQ(c.code, 0) << c.err;
  const json curve = json::parse(c.out);  // a named object: the loop must not outlive a temporary
  for (const auto& pt : curve["points"]) EXPECT_EQ(pt["status"], "converged");
  // A trainer that diverges: exit 3 (the status table), status "diverged".
  const CliRun d = run("minimum --widths 1,1 --data curvatures:1,4,9 --trainer gd --lr 10 --max-steps 1000");
  EXPECT_EQ(d.code, 3) << d.err;
  const json dj = json::parse(d.out);
  EXPECT_EQ(dj["status"], "diverged") << d.out;
  EXPECT_FALSE(dj["converged"].get<bool>());
  // A step budget that ends first: not_converged, also exit 3.
  const CliRun e = run("minimum --widths 1,1 --data curvatures:1,4,9 --trainer gd --lr 0.01 --max-steps 3");
  EXPECT_EQ(e.code, 3) << e.err;
  EXPECT_EQ(json::parse(e.out)["status"], "not_converged") << e.out;
}

TEST_F(Cli, DemoRunsAndItsCurveIsConsistent) {
  const CliRun r = run("demo");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  const auto& pts = j["points"];
  ASSERT_GE(pts.size(), 2u);
  for (std::size_t k = 1; k < pts.size(); ++k)
    EXPECT_GE(pts[k]["eta_star"].get<double>(), pts[k - 1]["eta_star"].get<double>() * (1 - 1e-12));
  EXPECT_REL_NEAR(pts[pts.size() - 1]["eta_star"].get<double>(), j["eta_gd"].get<double>(), 1e-9);
}

TEST_F(Cli, AnalyzeReportsTheThresholdOfItsOwnMinimum) {
  const CliRun r = run("analyze --widths 3,16,1 --activation tanh --bias --data teacher --samples 8 --seed 5 "
                       "--batches 1,2,8 --save-params " + file("p.npy") + " --save-jacobian " + file("j.npy") +
                       " --save-gram " + file("k.csv"));
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_TRUE(j["minimum"]["converged"].get<bool>());
  EXPECT_LE(j["minimum"]["max_residual"].get<double>(), j["minimum"]["residual_tolerance"].get<double>());
  EXPECT_EQ(j["minimum"]["params"], 3 * 16 + 16 + 16 + 1);
  // Independent path: the saved Jacobian through the library's own entry point.
  const MatrixXd jac = sgdstab::read_matrix(file("j.npy"));
  ASSERT_EQ(jac.rows(), 8);
  ASSERT_EQ(jac.cols(), 81);
  const MatrixXd gram = sgdstab::read_matrix(file("k.csv"));
  EXPECT_LT((gram - jac * jac.transpose()).cwiseAbs().maxCoeff(), 1e-9 * gram.cwiseAbs().maxCoeff());
  EXPECT_EQ(sgdstab::read_matrix(file("p.npy")).size(), 81);
  const auto g = sgdstab::Geometry::from_jacobian(jac, 1);
  const auto& pts = j["stability"]["points"];
  ASSERT_EQ(pts.size(), 3u);
  for (const auto& pt : pts) {
    const auto b = pt["batch"].get<Eigen::Index>();
    EXPECT_REL_NEAR(pt["eta_star"].get<double>(), sgdstab::stability_threshold(g, b).eta_star, 1e-8);
  }
  EXPECT_REL_NEAR(pts[2]["eta_star"].get<double>(), 2.0 / g.lambda_max(), 1e-8);
}

// 1-D curvature data: eta*(B=1) = 2a / (a^2 + gamma s^2) with a = mean a_i,
// s^2 = mean a_i^2 - a^2, gamma = 1 (B = 1 without replacement). For a = (1, 4, 9): 2/7.
TEST_F(Cli, CurvatureDataGivesTheOneDimensionalClosedForm) {
  const CliRun r = run("analyze --model linear --widths 1,1 --data curvatures:1,4,9 --batches 1,3");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_REL_NEAR(j["stability"]["points"][0]["eta_star"].get<double>(), 2.0 / 7.0, 1e-10);
  EXPECT_REL_NEAR(j["stability"]["points"][1]["eta_star"].get<double>(), 2.0 / (14.0 / 3.0), 1e-10);
}

TEST_F(Cli, MinimumOfATableIsTheMinimumNormSolution) {
  const MatrixXd x = ref::gaussian(3, 4, 1), y = ref::gaussian(3, 1, 2);
  MatrixXd table(3, 5);
  table << x, y;
  sgdstab::write_csv(file("t.csv"), table);
  const CliRun r = run("minimum --model linear --widths 4,1 --data csv:" + file("t.csv") + " --save-params " +
                       file("p.csv"));
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["trainer"], "minimum-norm");
  EXPECT_EQ(j["files"]["params"], file("p.csv"));
  const MatrixXd theta = sgdstab::read_matrix(file("p.csv"));
  const MatrixXd expected = x.transpose() * (x * x.transpose()).ldlt().solve(y);  // full row rank
  EXPECT_LT((theta - expected).cwiseAbs().maxCoeff(), 1e-12);
}

TEST_F(Cli, ModelAndDataErrors) {
  const MatrixXd table = ref::gaussian(6, 3, 1);  // d = 2, c = 1, n = 6 > d: not interpolable by a linear model
  sgdstab::write_csv(file("t.csv"), table);
  struct Case {
    std::string args;
    int code;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"minimum --widths 3,1 --data csv:" + file("t.csv"), 2, "the data have d = 2"},
      {"minimum --widths 2,1 --data nosuch", 2, "--data"},
      {"minimum --data teacher", 2, "--widths"},
      {"minimum --widths 2,4,1 --data teacher --trainer sgd", 2, "--lr"},
      {"minimum --widths 2,4,1 --data teacher --trainer sgd --lr 0.1 --batch 100", 2, "B must satisfy"},
      {"minimum --widths 2,4,1 --activation swish --data teacher", 2, "activation"},
      {"minimum --widths 2,4,1 --frozen 2 --data teacher", 2, "--frozen"},
      {"minimum --widths 2,4,1 --data fashion-mnist --data-dir " + file("none"), 1, "I/O error: " + file("none")},
      {"minimum --widths 3072,1 --data cifar10", 2, "cifar-10-binary.tar.gz"},
      {"threshold --bias --jacobian " + file("t.csv") + " --batch 1", 2, "bias"},
      {"minimum --model linear --widths 2,1 --data csv:" + file("t.csv") + " --samples 5", 2, "--samples"},
      {"minimum --widths 2,4,1 --data teacher --lr 0.1", 2, "--lr applies to --trainer gd or sgd"},
      {"minimum --widths 2,4,1 --data teacher --trainer gd --lr 0.1 --batch 2", 2, "--batch"},
      {"minimum --widths 2,4,1 --data teacher --classes 0,1", 2, "--classes"},
      {"minimum --widths 2,1 --activation relu --data teacher", 2, "hidden layer"},
      {"minimum --widths 2,4,1 --data teacher --allow-residual", 2, "analyze only"},
      {"analyze --widths 2,4,1 --data teacher --samples 8 --batches 9", 2, "--batches"},
  };
  for (const Case& c : cases) {
    const CliRun r = run(c.args);
    EXPECT_EQ(r.code, c.code) << c.args << "\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << c.args;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\n" << r.err;
  }
  // Not an interpolating minimum: exit 3 with the report; analyze refuses unless overridden.
  CliRun r = run("minimum --model linear --widths 2,1 --data csv:" + file("t.csv"));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_FALSE(json::parse(r.out)["converged"].get<bool>());
  r = run("analyze --model linear --widths 2,1 --data csv:" + file("t.csv"));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_FALSE(r.out.find("stability") != std::string::npos);
  r = run("analyze --model linear --widths 2,1 --data csv:" + file("t.csv") + " --allow-residual");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(json::parse(r.out).contains("stability"));
}

TEST_F(Cli, MonteCarloReportsExactAndSimulatedMoments) {
  const MatrixXd J = ref::gaussian(6, 4, 17);
  sgdstab::write_csv(file("j.csv"), J);
  const auto g = sgdstab::Geometry::from_jacobian(J, 1);
  const double lr = 0.8 * sgdstab::stability_threshold(g, 2).eta_star;
  std::ostringstream cmd;
  cmd.precision(17);
  cmd << "montecarlo --jacobian " << file("j.csv") << " --batch 2 --lr " << lr
      << " --steps 5 --trajectories 4000 --blocks 4000 --seed 3";
  CliRun r = run(cmd.str());
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  for (const char* key : {"lr", "batch", "sampling", "steps", "trajectories", "rho", "exact", "mc_mean", "mc_ci_low",
                          "mc_ci_high", "mc_median", "rho_hat", "rho_hat_ci_low", "rho_hat_ci_high", "verdict"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["verdict"], "agree") << j["reason"];
  const auto exact = sgdstab::exact_moments(g, lr, 2, sgdstab::Sampling::without_replacement, 5);
  ASSERT_EQ(j["exact"].size(), 6u);
  for (std::size_t t = 0; t < 6; ++t) EXPECT_REL_NEAR(j["exact"][t].get<double>(), exact.squared_norm[t], 1e-12);
  EXPECT_REL_NEAR(j["rho"].get<double>(), sgdstab::spectral_radius(g, lr, 2).rho, 1e-9);
  r = run(cmd.str() + " --sampling reshuffle");
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_TRUE(j["rho"].is_null());
  EXPECT_TRUE(j["exact"].is_null());
  EXPECT_EQ(j["verdict"], "inconclusive");
  r = run(cmd.str() + " --sampling epochs");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(r.out.empty());
  r = run("montecarlo --jacobian " + file("j.csv") + " --batch 2 --lr -1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("lr"), std::string::npos) << r.err;
}

TEST_F(Cli, EscapeClassifiesNonlinearRuns) {
  const std::string base = "escape --widths 2,8,1 --activation tanh --data teacher --samples 8 --seed 3 --batch 2 "
                           "--runs 10 --epsilon 1e-4 --quiet";
  CliRun r = run(base + " --lr-factor 1.3");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["escaped"], 10) << j["message"];
  EXPECT_REL_NEAR(j["lr"].get<double>(), 1.3 * j["eta_star"].get<double>(), 1e-12);
  EXPECT_LE(j["growth_rate"].get<double>(), j["log_rho"].get<double>());
  r = run(base + " --lr-factor 0.7");
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["converged"], 10) << j["message"];
  EXPECT_TRUE(j["growth_rate"].is_null());
  r = run(base + " --lr 0.1 --lr-factor 0.7");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(r.out.empty());
  r = run(base + " --sampling reshuffle --lr-factor 0.7");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("reshuffle"), std::string::npos) << r.err;
  // --lr is the runs' rate whatever the trainer (the default here, gauss-newton,
  // takes no rate): the run at 0.7 eta* by --lr-factor, again by --lr.
  r = run(base + " --lr-factor 0.7");
  ASSERT_EQ(r.code, 0) << r.err;
  const double lr = json::parse(r.out)["lr"].get<double>();
  std::ostringstream by_lr;
  by_lr << base << " --lr " << std::setprecision(17) << lr;
  r = run(by_lr.str());
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["lr"].get<double>(), lr);
  EXPECT_EQ(j["converged"], 10) << j["message"];
}

// The trainer's options in effect, echoed from MinimizeOptions' and
// TrainOptions' tables; their rules name the option.
TEST_F(Cli, MinimumEchoesTheTrainersOptions) {
  CliRun r = run("minimum --widths 2,8,1 --activation tanh --data teacher --samples 8 --seed 3 --max-iter 50");
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["options"]["max_iterations"], 50);
  EXPECT_EQ(j["options"]["residual_tolerance"], 1e-10);
  r = run("minimum --widths 1,1 --data curvatures:1,4,9 --trainer sgd --lr 0.1 --batch 2 --seed 4 "
          "--train-sampling with --residual-tol 1e-6 --max-steps 100000");
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_EQ(j["options"]["lr"], 0.1);
  EXPECT_EQ(j["options"]["batch"], 2);
  EXPECT_EQ(j["options"]["sampling"], "with");
  EXPECT_EQ(j["options"]["residual_tolerance"], 1e-6);
  EXPECT_EQ(j["options"]["seed"], 11);  // --seed + 7
  r = run("minimum --widths 1,1 --data curvatures:1,4,9 --trainer gd --lr 0.1 --max-steps -1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--max-steps: must be >= 0, got '-1'"), std::string::npos) << r.err;
  r = run("minimum --widths 1,1 --data curvatures:1,4,9 --trainer gd --residual-tol 0");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--lr"), std::string::npos) << r.err;
  r = run("minimum --widths 1,1 --data curvatures:1,4,9 --trainer gd --lr 0.1 --residual-tol 0");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--residual-tol: must be finite and > 0, got '0'"), std::string::npos) << r.err;
}

TEST_F(Cli, MomentumOnEscapeAndTheTrainer) {
  // escape --momentum: eta* and rho are momentum SGD's (the library's
  // momentum_threshold and momentum_spectral_radius on the same minimum), and
  // the runs use momentum; beta = 0.5, B = 1: all return below, escape above.
  const std::string base = "escape --widths 2,8,1 --activation tanh --data teacher --samples 8 --seed 3 --batch 1 "
                           "--runs 10 --epsilon 1e-4 --quiet --momentum 0.5";
  for (const std::string variant : {"", " --nesterov"}) {
    CliRun r = run(base + variant + " --lr-factor 1.3");
    ASSERT_EQ(r.code, 0) << r.err;
    json j = json::parse(r.out);
    EXPECT_EQ(j["momentum"], 0.5);
    EXPECT_EQ(j["nesterov"], !variant.empty());
    EXPECT_EQ(j["escaped"], 10) << j["message"];
    EXPECT_GT(j["rho"].get<double>(), 1.0);
    r = run(base + variant + " --lr-factor 0.7");
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_EQ(j["converged"], 10) << j["message"];
    EXPECT_LT(j["rho"].get<double>(), 1.0);
  }
  // The plain threshold of the same run differs: momentum is not ignored.
  const json plain = json::parse(run("escape --widths 2,8,1 --activation tanh --data teacher --samples 8 --seed 3 "
                                     "--batch 1 --runs 1 --epsilon 1e-4 --quiet --lr-factor 0.7").out);
  const json mom = json::parse(run("escape --widths 2,8,1 --activation tanh --data teacher --samples 8 --seed 3 "
                                   "--batch 1 --runs 1 --epsilon 1e-4 --quiet --lr-factor 0.7 --momentum 0.5").out);
  EXPECT_GT(std::abs(plain["eta_star"].get<double>() / mom["eta_star"].get<double>() - 1.0), 0.05);
  // The trainer: sgd with momentum reaches a minimum; momentum on gauss-newton is exit 2.
  CliRun r = run("minimum --widths 2,8,1 --activation tanh --data teacher --samples 8 --seed 3 --trainer sgd "
                 "--batch 2 --lr 0.05 --momentum 0.9 --residual-tol 1e-8 --max-steps 200000");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("sgd+momentum"), std::string::npos) << r.out;
  r = run("minimum --widths 2,8,1 --activation tanh --data teacher --samples 8 --seed 3 --trainer gauss-newton "
          "--momentum 0.9");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("gd and sgd trainers"), std::string::npos) << r.err;
  r = run("escape --widths 2,8,1 --activation tanh --data teacher --samples 8 --seed 3 --batch 1 --runs 1 --quiet "
          "--momentum 1.2 --lr-factor 0.7");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--momentum: must satisfy 0 <= beta < 1, got '1.2'"), std::string::npos) << r.err;
}

// sgdstab band: the library's band, around the program's own eta* of the
// same Gram; its options from BandOptions' table, echoed, with their rules.
TEST_F(Cli, BandContainsTheThresholdOfTheSameGram) {
  const MatrixXd J = ref::gaussian(16, 7, 31);  // n = 8, C = 2
  sgdstab::write_npy(file("k.npy"), J * J.transpose());
  const std::string input = " --gram " + file("k.npy") + " --outputs 2 --batch 3 --sampling bernoulli";
  CliRun r = run("band" + input + " --band-tol 1e-4 --top-vectors 3");
  ASSERT_EQ(r.code, 0) << r.err;
  const json band = json::parse(r.out);
  r = run("threshold" + input + " --tol 1e-10");
  ASSERT_EQ(r.code, 0) << r.err;
  const double eta = json::parse(r.out)["eta_star"].get<double>();
  EXPECT_LE(band["eta_low"].get<double>(), eta * (1 + 1e-8));
  EXPECT_GE(band["eta_high"].get<double>(), eta * (1 - 1e-8));
  EXPECT_EQ(band["options"]["tolerance"], 1e-4);
  EXPECT_EQ(band["options"]["top_vectors"], 3);
  EXPECT_EQ(band["sampling"], "bernoulli");
  EXPECT_EQ(band["status"], "converged");
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);
  sgdstab::BandOptions o;
  o.tolerance = 1e-4;
  o.top_vectors = 3;
  const sgdstab::BandResult lib = sgdstab::stability_band(g, 3, sgdstab::Sampling::bernoulli, o);
  EXPECT_REL_NEAR(band["eta_low"].get<double>(), lib.eta_low, 1e-8);
  EXPECT_REL_NEAR(band["eta_high"].get<double>(), lib.eta_high, 1e-8);
  r = run("band" + input + " --band-tol 2");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--band-tol: must lie in (0, 1), got '2'"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

// --matrix-free: the band from the Jacobian's products, around the exact
// threshold of the same Jacobian; the options and the kind of the lower side
// in the JSON; bad options refused before any output.
TEST_F(Cli, MatrixFreeBandContainsTheThresholdOfTheSameJacobian) {
  const MatrixXd J = ref::gaussian(20, 30, 37);  // n = 10, C = 2, p = 30
  sgdstab::write_npy(file("j.npy"), J);
  const std::string input = " --jacobian " + file("j.npy") + " --outputs 2 --batch 4 --sampling with";
  CliRun r = run("band --matrix-free" + input + " --band-subspace 6 --band-lanczos 10 --band-delta 0.01 --seed 3");
  ASSERT_EQ(r.code, 0) << r.err;
  const json band = json::parse(r.out);
  r = run("threshold" + input + " --tol 1e-10");
  ASSERT_EQ(r.code, 0) << r.err;
  const double eta = json::parse(r.out)["eta_star"].get<double>();
  EXPECT_LE(band["eta_low_certified"].get<double>(), eta * (1 + 1e-8));
  EXPECT_GE(band["eta_high"].get<double>(), eta * (1 - 1e-8));
  EXPECT_EQ(band["matrix_free"], true);
  // The Krylov space (6, doubled at most twice, at most n C = 20 vectors) and noise directions.
  const long long doublings = band["subspace_doublings"].get<long long>();
  EXPECT_GE(doublings, 0);
  EXPECT_LE(doublings, 2);
  EXPECT_GE(band["subspace_dimension"].get<long long>(), 6);  // the subspace that gave eta_high
  EXPECT_LE(band["subspace_dimension"].get<long long>(), std::min((6LL << doublings) + 8, 30LL));
  EXPECT_EQ(band["params"], 30);
  EXPECT_EQ(band["options"]["subspace"], 6);
  EXPECT_EQ(band["options"]["lanczos_steps"], 10);
  EXPECT_EQ(band["options"]["delta"], 0.01);
  EXPECT_EQ(band["options"]["seed"], 3);
  const std::string kind = band["eta_low_kind"].get<std::string>();
  EXPECT_TRUE(kind == "certified" || kind == "probabilistic") << kind;
  EXPECT_GT(band["products"].get<long long>(), 0);
  sgdstab::BandOptions o;
  o.subspace = 6;
  o.lanczos_steps = 10;
  o.delta = 0.01;
  o.seed = 3;
  const sgdstab::BandResult lib =
      sgdstab::stability_band(sgdstab::JacobianModel(J, 2), 4, sgdstab::Sampling::with_replacement, o);
  EXPECT_REL_NEAR(band["eta_high"].get<double>(), lib.eta_high, 1e-8);
  EXPECT_REL_NEAR(band["eta_low"].get<double>(), lib.eta_low, 1e-8);
  EXPECT_EQ(band["subspace_doublings"], lib.subspace_doublings);
  EXPECT_EQ(band["options"]["subspace_doublings"], 2);
  r = run("band --matrix-free" + input + " --band-doublings 11");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--band-doublings: must lie in [0, 10], got '11'"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  r = run("band --matrix-free" + input + " --band-delta 1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--band-delta: must lie in [0, 1), got '1'"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
  r = run("band --matrix-free --jacobian " + file("j.npy") + " --outputs 2 --batch 11");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("1 <= B <= n = 10"), std::string::npos) << r.err;
}

// band --momentum BETA [--nesterov]: the momentum band (theory/band.md,
// section 6) around the exact momentum threshold of the same Jacobian, the
// options echoed, the library's numbers; --nesterov alone refused.
TEST_F(Cli, MomentumBandContainsTheMomentumThreshold) {
  const MatrixXd J = ref::gaussian(16, 12, 41);  // n = 8, C = 2, p = 12
  sgdstab::write_npy(file("jm.npy"), J);
  const std::string input = " --jacobian " + file("jm.npy") + " --outputs 2 --batch 3 --momentum 0.6 --nesterov";
  CliRun r = run("band --matrix-free" + input);
  ASSERT_EQ(r.code, 0) << r.err;
  const json band = json::parse(r.out);
  r = run("threshold" + input);
  ASSERT_EQ(r.code, 0) << r.err;
  const json exact = json::parse(r.out);
  EXPECT_LE(band["eta_low"].get<double>(), exact["eta_high"].get<double>() * (1 + 1e-9));
  EXPECT_GE(band["eta_high"].get<double>(), exact["eta_low"].get<double>() * (1 - 1e-9));
  EXPECT_LE(band["eta_high"].get<double>(), exact["eta_mean"].get<double>() * (1 + 1e-9));
  EXPECT_EQ(band["low_witness"], "momentum-modes");
  EXPECT_EQ(band["options"]["momentum"], 0.6);
  EXPECT_EQ(band["options"]["nesterov"], true);
  sgdstab::BandOptions o;
  o.momentum = 0.6;
  o.nesterov = true;
  const sgdstab::BandResult lib =
      sgdstab::stability_band(sgdstab::JacobianModel(J, 2), 3, sgdstab::Sampling::without_replacement, o);
  EXPECT_REL_NEAR(band["eta_low"].get<double>(), lib.eta_low, 1e-12);
  r = run("band --jacobian " + file("jm.npy") + " --outputs 2 --batch 3 --nesterov");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--nesterov needs --momentum"), std::string::npos) << r.err;
  // Without --matrix-free too (always from products with momentum), and a
  // Gram's lambda_max(H) known exactly: at B = n both sides are the limit.
  const MatrixXd k = J * J.transpose();
  sgdstab::write_npy(file("km.npy"), k);
  r = run("band --gram " + file("km.npy") + " --outputs 2 --batch 8 --momentum 0.6 --band-subspace 2 --band-delta 0");
  ASSERT_EQ(r.code, 0) << r.err;
  const json full = json::parse(r.out);
  EXPECT_EQ(full["matrix_free"], true);
  EXPECT_EQ(full["momentum"], 0.6);
  EXPECT_EQ(full["nesterov"], false);
  const double limit = 2.0 * 1.6 / sgdstab::Geometry::from_gram(k, 2).lambda_max();
  EXPECT_REL_NEAR(full["eta_high"].get<double>(), limit, 1e-9);
  EXPECT_REL_NEAR(full["eta_mean"].get<double>(), limit, 1e-12);
  EXPECT_REL_NEAR(full["eta_low"].get<double>(), limit, 1e-8);
}

// region --engine: auto runs the exact region up to --exact-max-rank and the
// band beyond it (saying which and why); each band contains the exact
// eta*(B) of the same Gram at every scheme and batch size; marks are judged
// against the band; weight decay is refused with the band.
TEST_F(Cli, RegionEngineChoosesAndTheBandContainsTheExactRegion) {
  const MatrixXd J = ref::gaussian(24, 14, 41);  // n = 12, C = 2, r = 14
  sgdstab::write_npy(file("j.npy"), J);
  const std::string input = " --jacobian " + file("j.npy") + " --outputs 2 --batches 1,3,12 --sampling without,bernoulli";
  CliRun r = run("region" + input + " --tol 1e-10");
  ASSERT_EQ(r.code, 0) << r.err;
  const json exact = json::parse(r.out);
  EXPECT_EQ(exact["engine"], "exact");
  EXPECT_NE(exact["engine_reason"].get<std::string>().find("rank 14 <= --exact-max-rank 4096"), std::string::npos);
  r = run("region" + input + " --exact-max-rank 10 --band-subspace 6 --band-lanczos 10 --seed 2 --mark 1e-9,3"
          " --mark 1e9,12");
  ASSERT_EQ(r.code, 0) << r.err;
  const json band = json::parse(r.out);
  EXPECT_EQ(band["engine"], "band");
  EXPECT_EQ(band["engine_reason"], "rank 14 > --exact-max-rank 10");
  EXPECT_EQ(band["options"]["subspace"], 6);
  EXPECT_EQ(band["options"]["seed"], 2);
  ASSERT_EQ(band["curves"].size(), 2u);
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);
  for (std::size_t s = 0; s < 2; ++s) {
    const json& cb = band["curves"][s];
    EXPECT_EQ(cb["sampling"], exact["curves"][s]["sampling"]);
    ASSERT_EQ(cb["points"].size(), 3u);
    const sgdstab::Sampling scheme = s == 0 ? sgdstab::Sampling::without_replacement : sgdstab::Sampling::bernoulli;
    for (std::size_t i = 0; i < 3; ++i) {
      const json& p = cb["points"][i];
      const double eta = exact["curves"][s]["points"][i]["eta_star"].get<double>();
      EXPECT_EQ(p["batch"], exact["curves"][s]["points"][i]["batch"]);
      const auto b = p["batch"].get<sgdstab::Index>();
      EXPECT_REL_NEAR(eta, sgdstab::stability_threshold(g, b, scheme).eta_star, 1e-7);
      EXPECT_LE(p["eta_low_certified"].get<double>(), eta * (1 + 1e-8)) << s << " " << b;
      EXPECT_GE(p["eta_high"].get<double>(), eta * (1 - 1e-8)) << s << " " << b;
      EXPECT_LE(p["eta_low"].get<double>(), p["eta_high"].get<double>() * (1 + 1e-12));
    }
  }
  // One library call over both schemes (the Krylov subspace of H made
  // once) with lambda_max(H) known from the Gram, as the program has it:
  // the same bands and the same products as the program's.
  sgdstab::BandOptions bo;
  bo.subspace = 6;
  bo.lanczos_steps = 10;
  bo.seed = 2;
  const auto lib = sgdstab::detail::band_region_known_top(
      sgdstab::JacobianModel::from_geometry(g),
      {sgdstab::Sampling::without_replacement, sgdstab::Sampling::bernoulli}, {1, 3, 12}, bo, g.lambda_max());
  EXPECT_EQ(band["products"].get<sgdstab::Index>(), lib[0][0].products);
  for (std::size_t s = 0; s < 2; ++s)
    for (std::size_t i = 0; i < 3; ++i) {
      EXPECT_REL_NEAR(band["curves"][s]["points"][i]["eta_high"].get<double>(), lib[s][i].eta_high, 1e-15);
      EXPECT_REL_NEAR(band["curves"][s]["points"][i]["eta_low"].get<double>(), lib[s][i].eta_low, 1e-15);
    }
  EXPECT_EQ(band["converged"], true);
  EXPECT_EQ(band["status"], "converged");
  EXPECT_EQ(band["momentum"], 0.0);
  ASSERT_EQ(band["marks"].size(), 4u);  // mark by mark, then scheme by scheme, as in the exact region
  for (std::size_t k = 0; k < 4; ++k) {
    const json& m = band["marks"][k];
    EXPECT_EQ(m["batch"], k < 2 ? 3 : 12);
    EXPECT_EQ(m["sampling"], k % 2 == 0 ? "without" : "bernoulli");
    EXPECT_EQ(m["verdict"], k < 2 ? "stable" : "unstable");
    EXPECT_EQ(m["stable"], k < 2);
    EXPECT_EQ(m["status"], "converged");
  }
  r = run("region" + input + " --engine band --mark 1e-9,5");  // a mark at a batch size outside --batches
  ASSERT_EQ(r.code, 0) << r.err;
  const json off = json::parse(r.out);
  EXPECT_EQ(off["engine_reason"], "--engine band");
  EXPECT_EQ(off["marks"][0]["verdict"], "stable");
  EXPECT_EQ(off["marks"][0]["batch"], 5);
  EXPECT_EQ(off["curves"][0]["points"].size(), 3u);  // the curves keep --batches
  const double mid = 0.5 * (off["marks"][0]["eta_low"].get<double>() + off["marks"][0]["eta_high"].get<double>());
  std::ostringstream mid_text;
  mid_text << std::setprecision(17) << mid;
  r = run("region" + input + " --engine band --mark " + mid_text.str() + ",5");
  ASSERT_EQ(r.code, 0) << r.err;
  const json und = json::parse(r.out)["marks"][0];
  ASSERT_LT(und["eta_low"].get<double>(), und["eta_high"].get<double>());  // the same band, so mid lies inside
  EXPECT_EQ(und["verdict"], "undecided");
  EXPECT_TRUE(und["stable"].is_null());
  // Below the exact region's least footprint (exact_region_min_bytes, what
  // the solver checks), auto takes the band up front and says why; an
  // explicit --engine exact fails instead (exit 1, nothing written).
  r = run("region" + input + " --memory-limit 0.05");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["engine"], "band");
  EXPECT_EQ(json::parse(r.out)["engine_reason"].get<std::string>().rfind("the exact region needs at least ", 0), 0u)
      << r.out;
  EXPECT_EQ(r.err.find("running the band instead"), std::string::npos) << r.err;
  r = run("region" + input + " --memory-limit 0.05 --engine exact");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(r.out.empty());
  r = run("region" + input + " --exact-max-rank 10 --engine exact");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["engine"], "exact");
  r = run("region" + input + " --exact-max-rank 10 --momentum 0.5");  // momentum's band (theory/band.md, section 6)
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["engine"], "band");
  r = run("region" + input + " --exact-max-rank 10 --momentum 0.5 --weight-decay 0.1");  // no band with weight decay
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["engine"], "exact");
  EXPECT_EQ(json::parse(r.out)["engine_reason"], "weight decay: the band has none, so the exact engine runs");
  // The band region's picture: a bar per scheme and batch size, one curve per scheme, the marks.
  r = run("region" + input + " --engine band --mark 1e-9,3 --mark 1e9,12 --plot " + file("band.svg"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["plot"], file("band.svg"));
  std::ifstream svg_in(file("band.svg"));
  const std::string svg((std::istreambuf_iterator<char>(svg_in)), std::istreambuf_iterator<char>());
  const auto count = [&](const std::string& what) {
    std::size_t k = 0;
    for (std::size_t at = svg.find(what); at != std::string::npos; at = svg.find(what, at + 1)) ++k;
    return k;
  };
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(count("class=\"interval\""), 6u);  // 2 schemes x 3 batch sizes
  EXPECT_EQ(count("<path class=\"curve\""), 2u);
  EXPECT_EQ(count("class=\"mark\""), 4u);
  EXPECT_EQ(count(": stable</title>"), 2u);
  EXPECT_EQ(count(": unstable</title>"), 2u);
  const std::vector<std::string> refused = {" --engine band --weight-decay 0.1 --plot " + file("x.svg"),
                                           " --engine fast", " --exact-max-rank 0", " --engine band --seed -1",
                                           " --engine band --mark 1e-3,13"};
  for (const std::string& bad : refused) {
    r = run("region" + input + bad);
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_TRUE(r.out.empty()) << bad;
  }
  // An engine named explicitly refuses the other's options by name; auto
  // takes both (each applies where its engine runs); --memory-limit is the
  // reduction's too.
  for (const auto& [bad, msg] : std::vector<std::pair<std::string, std::string>>{
           {" --engine band --tol 1e-8", "--tol: an option of the exact engine"},
           {" --engine band --method dense", "--method: an option of the exact engine"},
           {" --engine band --precision double", "--precision: an option of the exact engine"},
           {" --engine exact --band-subspace 6", "--band-subspace: an option of the band engine"},
           {" --engine exact --seed 3", "--seed: an option of the band engine"}}) {
    r = run("region" + input + bad);
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_TRUE(r.out.empty()) << bad;
    EXPECT_NE(r.err.find(msg), std::string::npos) << bad << ": " << r.err;
  }
  r = run("region" + input + " --exact-max-rank 10 --tol 1e-8 --band-subspace 6");
  EXPECT_EQ(r.code, 0) << r.err;
  r = run("region" + input + " --engine band --memory-limit 100000");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(std::ifstream(file("x.svg")).good());
  r = run("region --jacobian " + file("j.npy") + " --outputs 2 --batches 1,3 --sampling without --engine band"
          " --weight-decay 0.1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--engine band: the band has no weight decay"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

// region --momentum with the band engine (theory/band.md, section 6): every
// band holds the exact momentum region's eta* of the same Gram, no upper
// side exceeds the full-batch limit, the picture's limit line is that limit,
// and auto chooses the band past --exact-max-rank as without momentum.
TEST_F(Cli, MomentumRegionBandHoldsTheExactMomentumRegion) {
  const MatrixXd J = ref::gaussian(20, 12, 43);  // n = 10, C = 2, r = 12
  sgdstab::write_npy(file("jr.npy"), J);
  const std::string input =
      " --jacobian " + file("jr.npy") + " --outputs 2 --batches 1,4,10 --sampling without,with --momentum 0.8";
  CliRun r = run("region" + input);
  ASSERT_EQ(r.code, 0) << r.err;
  const json exact = json::parse(r.out);
  EXPECT_EQ(exact["engine"], "exact");
  r = run("region" + input + " --exact-max-rank 8 --plot " + file("mb.svg"));
  ASSERT_EQ(r.code, 0) << r.err;
  const json band = json::parse(r.out);
  EXPECT_EQ(band["engine"], "band");
  EXPECT_EQ(band["momentum"], 0.8);
  EXPECT_EQ(band["options"]["momentum"], 0.8);
  const double mean = 2.0 * 1.8 / sgdstab::Geometry::from_jacobian(J, 2).lambda_max();
  ASSERT_EQ(band["curves"].size(), 2u);
  for (std::size_t s = 0; s < 2; ++s)
    for (std::size_t i = 0; i < 3; ++i) {
      const json& p = band["curves"][s]["points"][i];
      const json& e = exact["curves"][s]["points"][i];
      EXPECT_EQ(p["batch"], e["batch"]);
      EXPECT_LE(p["eta_low"].get<double>(), e["eta_star"].get<double>() * (1 + 1e-6)) << s << " " << i;
      EXPECT_GE(p["eta_high"].get<double>(), e["eta_star"].get<double>() * (1 - 1e-6)) << s << " " << i;
      EXPECT_LE(p["eta_high"].get<double>(), mean * (1 + 1e-9));
      EXPECT_EQ(p["low_witness"], "momentum-modes");
    }
  std::ifstream svg_in(file("mb.svg"));
  const std::string svg((std::istreambuf_iterator<char>(svg_in)), std::istreambuf_iterator<char>());
  EXPECT_NE(svg.find(">2(1+beta)/lambda_max</text>"), std::string::npos);
  EXPECT_NE(svg.find("momentum 0.8"), std::string::npos);
}

// Every JSON result names the machine it was computed on (issue #33).
TEST_F(Cli, ResultsCarryThePerformanceBlock) {
  const MatrixXd J = ref::gaussian(12, 5, 23);  // n = 6, C = 2
  sgdstab::write_npy(file("j.npy"), J);
  const sgdstab::MachineInfo m = sgdstab::machine_info();
  for (const std::string cmd : {"threshold --batch 2", "region --batches 1,6", "band --batch 2"}) {
    const CliRun r = run(cmd + " --jacobian " + file("j.npy") + " --outputs 2");
    ASSERT_EQ(r.code, 0) << cmd << ": " << r.err;
    const json p = json::parse(r.out)["performance"];
    EXPECT_EQ(p["cpu"], m.cpu) << cmd;
    EXPECT_EQ(p["blas"], m.blas) << cmd;
    EXPECT_EQ(p["blas_core"], m.blas_core) << cmd;
    EXPECT_EQ(p["logical_cpus"], m.logical_cpus) << cmd;
    EXPECT_EQ(p["openblas_coretype"].is_null(), m.openblas_coretype.empty()) << cmd;
  }
}

TEST_F(Cli, BoundsAndAlignmentMatchTheLibrary) {
  const MatrixXd J = ref::gaussian(12, 5, 23);  // n = 6, C = 2
  sgdstab::write_csv(file("j.csv"), J);
  sgdstab::write_npy(file("k.npy"), J * J.transpose());
  const Eigen::VectorXd r = ref::gaussian(12, 1, 24).col(0), d = ref::gaussian(5, 1, 25).col(0);
  sgdstab::write_csv(file("r.csv"), r);
  sgdstab::write_csv(file("d.csv"), d);
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);
  const auto b = sgdstab::stability_bounds(g, 3, sgdstab::Sampling::with_replacement);
  CliRun run1 = run("bounds --gram " + file("k.npy") + " --outputs 2 --batch 3 --sampling with");
  ASSERT_EQ(run1.code, 0) << run1.err;
  json j = json::parse(run1.out);
  for (const char* key : {"eta_star", "eta_gd", "eta_sufficient", "eta_necessary_rank1", "eta_necessary_trace",
                          "eta_alignment", "mu_star", "sharpness", "non_uniformity", "hessian_frobenius", "batch",
                          "sampling"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_REL_NEAR(j["eta_star"].get<double>(), b.eta_star, 1e-9);
  EXPECT_REL_NEAR(j["eta_sufficient"].get<double>(), b.eta_sufficient, 1e-9);
  EXPECT_REL_NEAR(j["mu_star"].get<double>(), b.mu_star, 1e-9);
  EXPECT_LE(j["eta_sufficient"].get<double>(), j["eta_star"].get<double>());
  CliRun run2 = run("alignment --jacobian " + file("j.csv") + " --outputs 2 --residual " + file("r.csv"));
  ASSERT_EQ(run2.code, 0) << run2.err;
  EXPECT_REL_NEAR(json::parse(run2.out)["mu"].get<double>(), sgdstab::alignment_from_jacobian(J, 2, r), 1e-10);
  CliRun run3 = run("alignment --jacobian " + file("j.csv") + " --outputs 2 --direction " + file("d.csv"));
  ASSERT_EQ(run3.code, 0) << run3.err;
  EXPECT_REL_NEAR(json::parse(run3.out)["mu_lin"].get<double>(), sgdstab::alignment_from_jacobian(J, 2, J * d), 1e-10);
  EXPECT_EQ(run("alignment --gram " + file("k.npy") + " --outputs 2 --direction " + file("d.csv")).code, 2);
  EXPECT_EQ(run("alignment --jacobian " + file("j.csv") + " --outputs 2").code, 2);
  // analyze carries the bounds table, one row per batch size.
  CliRun run4 = run("analyze --widths 3,12,1 --activation tanh --data teacher --samples 6 --seed 2 --batches 1,3,6");
  ASSERT_EQ(run4.code, 0) << run4.err;
  j = json::parse(run4.out);
  ASSERT_EQ(j["bounds"].size(), 3u);
  for (std::size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(j["bounds"][k]["eta_star"], j["stability"]["points"][k]["eta_star"]);
    EXPECT_LE(j["bounds"][k]["eta_sufficient"].get<double>(), j["bounds"][k]["eta_star"].get<double>() * (1 + 1e-9));
  }
  EXPECT_FALSE(j["bounds"][0]["eta_trace_b1"].is_null());
  // The alignment log of an SGD run: step, loss, mu, |G|_F per row.
  CliRun run5 = run("minimum --widths 3,12,1 --activation tanh --data teacher --samples 6 --seed 2 --trainer sgd "
                    "--lr 0.05 --batch 2 --max-steps 400 --residual-tol 1e-3 --alignment-log " + file("a.csv") +
                    " --log-every 50");
  ASSERT_TRUE(run5.code == 0 || run5.code == 3) << run5.err;
  j = json::parse(run5.out);
  EXPECT_EQ(j["files"]["alignment_log"], file("a.csv"));
  const MatrixXd log = sgdstab::read_matrix(file("a.csv"));
  ASSERT_EQ(log.cols(), 4);
  EXPECT_EQ(log(0, 0), 0.0);
  EXPECT_EQ(log(1, 0), 50.0);
  EXPECT_GT(log(0, 2), 0.0);
  EXPECT_EQ(run("minimum --widths 3,12,1 --data teacher --alignment-log " + file("b.csv")).code, 2);
}

TEST_F(Cli, CnnCommands) {
#ifdef SGDSTAB_CLI_HAS_CNN
  const std::string base = "cnn analyze --data synthetic --per-class 4 --arch vgg:4 --hidden 32 --lr 0.05 --batch 2 "
                           "--seed 1 --device cpu --batches 1,8 --save-jacobian " + file("j.npy") + " --save-params " +
                           file("p.npy");
  CliRun r = run(base);
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_TRUE(j["converged"].get<bool>());
  EXPECT_LE(j["max_residual"].get<double>(), j["residual_tolerance"].get<double>());
  // The curve equals the core solver on the exported Jacobian.
  const auto g = sgdstab::Geometry::from_jacobian(sgdstab::read_matrix(file("j.npy")), 2);
  EXPECT_REL_NEAR(j["points"][0]["eta_star"].get<double>(), sgdstab::stability_threshold(g, 1).eta_star, 1e-8);
  EXPECT_REL_NEAR(j["points"][1]["eta_star"].get<double>(), 2.0 / g.lambda_max(), 1e-8);
  r = run("cnn train --data synthetic --arch vgg:4,4,4,4 --lr 0.05 --batch 2");  // 4 poolings of 8 x 8
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(r.out.empty());
  EXPECT_EQ(run("cnn fit --data synthetic").code, 2);
  r = run("cnn train --data synthetic --arch vgg:4,M,4 --hidden 8 --lr 0.01 --batch 2 --max-steps 1 --device cpu");
  EXPECT_EQ(json::parse(r.out)["params"].get<int>(), (4 * 9 + 4) + (4 * 4 * 9 + 4) + (8 * 64 + 8) + (2 * 8 + 2)) << r.err;
  for (const std::string bad : {"vgg:M,4", "vgg:4,M,M", "vgg11/32", "vgg11x", "resnet"}) {
    r = run("cnn train --data synthetic --lr 0.01 --batch 2 --arch " + bad);
    EXPECT_EQ(r.code, 2) << bad;
    EXPECT_NE(r.err.find("--arch"), std::string::npos) << bad << ": " << r.err;
  }
  // Exact and Hessian-vector-product answers side by side.
  j = json::parse(run(base).out);
  EXPECT_REL_NEAR(j["lanczos"]["lambda_max"].get<double>(), g.lambda_max(), 1e-5);
  EXPECT_REL_NEAR(j["hessian_frobenius"].get<double>(), g.hessian_frobenius(), 1e-8);
  EXPECT_GT(j["hutchinson"]["ci_high"].get<double>(), j["hutchinson"]["ci_low"].get<double>());
  EXPECT_REL_NEAR(j["at_lr"]["rho"].get<double>(), sgdstab::spectral_radius(g, 0.05, 2).rho, 1e-8);
  // --momentum at the same parameters: momentum SGD's curve and verdict, no plain-SGD bounds.
  r = run("cnn analyze --data synthetic --per-class 4 --arch vgg:4 --hidden 32 --lr 0.01 --batch 2 --seed 1 --device cpu "
          "--batches 1,8 --probes 0 --lanczos-iters 0 --momentum 0.9 --nesterov --params " + file("p.npy"));
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  const sgdstab::Momentum mo{0.9, true};
  EXPECT_EQ(j["momentum"], 0.9);
  EXPECT_EQ(j["nesterov"], true);
  EXPECT_REL_NEAR(j["points"][0]["eta_star"].get<double>(),
                  sgdstab::momentum_threshold(g, 1, sgdstab::Sampling::without_replacement, mo).eta_star, 1e-8);
  EXPECT_REL_NEAR(j["points"][1]["eta_star"].get<double>(), 2 * 1.9 / 2.8 / g.lambda_max(), 1e-8);
  EXPECT_FALSE(j["points"][0].contains("eta_sufficient"));
  EXPECT_REL_NEAR(j["at_lr"]["rho"].get<double>(),
                  sgdstab::momentum_spectral_radius(g, 0.01, 2, sgdstab::Sampling::without_replacement, mo).rho, 1e-8);
  // Hessian-vector products only (no Gram): the same lambda_max, and 2/lambda_max inside its interval.
  const std::string hvp = "cnn analyze --data synthetic --per-class 4 --arch vgg:4 --hidden 32 --lr 0.05 --batch 2 "
                          "--seed 1 --device cpu --geometry hvp";
  r = run(hvp);
  ASSERT_EQ(r.code, 0) << r.err;
  j = json::parse(r.out);
  EXPECT_FALSE(j.contains("points"));
  EXPECT_FALSE(j.contains("gram"));
  EXPECT_TRUE(j["hutchinson"]["contains_exact"].is_null());
  EXPECT_REL_NEAR(j["lanczos"]["lambda_max"].get<double>(), g.lambda_max(), 1e-5);
  EXPECT_LE(j["lanczos"]["eta_gd_low"].get<double>(), 2.0 / g.lambda_max() * (1 + 1e-6));
  EXPECT_GE(j["lanczos"]["eta_gd_high"].get<double>(), 2.0 / g.lambda_max() * (1 - 1e-6));
  EXPECT_EQ(run(hvp + " --batches 1,2").code, 2);
  EXPECT_EQ(run(hvp + " --probes 0 --lanczos-iters 0").code, 2);
  EXPECT_EQ(run(hvp.substr(0, hvp.size() - 3) + "dense").code, 2);  // --geometry dense
#else
  const CliRun r = run("cnn train --data synthetic --lr 0.1 --batch 2");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("LibTorch"), std::string::npos) << r.err;
  GTEST_SKIP() << "this build has no LibTorch module; checked that `sgdstab cnn` says so";
#endif
}


// `cnn sweep`: one CSV row per (lr, B); every converged row's |H|_F and eta*(B)
// equal the core solver on the Jacobian exported at the saved parameters, the
// SVG has one point per converged run. Checkpoints resume; logs have their rows.
TEST_F(Cli, CnnSweepCheckpointsAndParams) {
#ifdef SGDSTAB_CLI_HAS_CNN
  const std::string common = "--data synthetic --per-class 4 --arch vgg:4 --hidden 32 --seed 1 --device cpu";
  CliRun r = run("cnn sweep " + common + " --lrs 0.02,0.04 --batches 1,4 --quiet --log-every 50 --out " + file("sweep"));
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  ASSERT_EQ(j["runs"].size(), 4u);
  const std::string csv = slurp(file("sweep/sweep.csv"));
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "lr,batch,sampling,converged,steps,loss,max_residual,hessian_frobenius,lambda_max,eta_star,"
            "lr_over_eta_star,mu,mu_star,gamma,eta_alignment,sqrt_batch_over_lr,seconds,params_file,message,"
            "mu_min_training,alignment_log");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 5);
  EXPECT_NE(csv.find("\n0.04,4,\"without\",1,"), std::string::npos) << csv;
  // Alignment logs: every run starts from the same network, so step 0 agrees;
  // mu_min_training is the smallest mu of the run's log.
  std::string first_row;
  for (const auto& row : j["runs"]) {
    const std::string log = slurp(file("sweep/" + row["alignment_log"].get<std::string>()));
    std::istringstream lines(log);
    std::string line;
    std::getline(lines, line);
    EXPECT_EQ(line, "step,loss,mu,g_frobenius");
    double mu_min = INFINITY;
    int rows = 0;
    while (std::getline(lines, line)) {
      if (rows++ == 0) {
        EXPECT_EQ(line.rfind("0,", 0), 0u) << line;
        if (first_row.empty()) first_row = line;
        EXPECT_EQ(line, first_row);
      }
      const auto c1 = line.find(','), c2 = line.find(',', c1 + 1), c3 = line.find(',', c2 + 1);
      mu_min = std::min(mu_min, std::stod(line.substr(c2 + 1, c3 - c2 - 1)));
    }
    EXPECT_GE(rows, 2);
    EXPECT_DOUBLE_EQ(row["mu_min_training"].get<double>(), mu_min);
  }
  int converged = 0;
  for (const auto& row : j["runs"]) {
    if (!row["converged"].get<bool>()) continue;
    ++converged;
    const auto b = row["batch"].get<sgdstab::Index>();
    const CliRun a = run("cnn analyze " + common + " --probes 0 --lanczos-iters 0 --batches " + std::to_string(b) +
                         " --params " + file("sweep/" + row["params_file"].get<std::string>()) + " --save-jacobian " +
                         file("jp.npy"));
    ASSERT_EQ(a.code, 0) << a.err;
    const auto g = sgdstab::Geometry::from_jacobian(sgdstab::read_matrix(file("jp.npy")), 2);
    EXPECT_REL_NEAR(row["hessian_frobenius"].get<double>(), g.hessian_frobenius(), 1e-8);
    EXPECT_REL_NEAR(row["eta_star"].get<double>(), sgdstab::stability_threshold(g, b).eta_star, 1e-8);
    EXPECT_REL_NEAR(row["mu"].get<double>(), json::parse(a.out)["mu"].get<double>(), 1e-10);
    EXPECT_DOUBLE_EQ(row["sqrt_batch_over_lr"].get<double>(), std::sqrt(double(b)) / row["lr"].get<double>());
  }
  EXPECT_GE(converged, 3);
  const std::string svg = slurp(file("sweep/hessian_frobenius_vs_sqrtB_over_lr.svg"));
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  std::size_t points = 0;
  for (std::size_t at = svg.find("<title>"); at != std::string::npos; at = svg.find("<title>", at + 1)) ++points;
  EXPECT_EQ(points, static_cast<std::size_t>(converged));

  // Checkpoints and the alignment log of an unfinished run; resuming from the checkpoint.
  const std::string train = "cnn train " + common + " --lr 0.02 --batch 2 --max-steps 30 ";
  r = run(train + "--checkpoint " + file("ck.npy") + " --checkpoint-every 10 --alignment-log " + file("al.csv") +
          " --log-every 10");
  ASSERT_EQ(r.code, 3) << r.err;  // step budget before interpolation
  const double loss = json::parse(r.out)["loss"].get<double>();
  EXPECT_EQ(sgdstab::read_matrix(file("ck.npy")).size(), json::parse(r.out)["params"].get<sgdstab::Index>());
  const std::string log = slurp(file("al.csv"));
  EXPECT_EQ(log.substr(0, log.find('\n')), "step,loss,mu,g_frobenius");
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 5);  // steps 0, 10, 20, 30
  r = run("cnn train " + common + " --lr 0.02 --batch 2 --max-steps 0 --init-params " + file("ck.npy"));
  EXPECT_REL_NEAR(json::parse(r.out)["loss"].get<double>(), loss, 1e-12);
  // CIFAR-10 through the data layer: five small batch files (labels 0, 1, pixels
  // k); a truncated batch is an error naming the file and nothing is printed.
  ASSERT_EQ(::mkdir(file("cifar").c_str(), 0700), 0);
  for (int b = 1; b <= 5; ++b) {
    std::string bytes;
    for (int rec = 0; rec < 2; ++rec) {
      bytes += static_cast<char>(rec);
      bytes += std::string(3072, static_cast<char>(10 * b + rec));
    }
    testing_files::write_bytes(file("cifar/data_batch_" + std::to_string(b) + ".bin"), bytes);
  }
  r = run("cnn train --data cifar10:" + file("cifar") + " --classes 0,1 --per-class 3 --arch vgg:2 --hidden 4 "
          "--lr 0.01 --batch 2 --max-steps 3 --device cpu");
  ASSERT_NE(r.out, "") << r.err;
  EXPECT_EQ(json::parse(r.out)["samples"].get<int>(), 6);
  EXPECT_EQ(json::parse(r.out)["arch"]["image"], json::parse("[3, 32, 32]"));
  testing_files::write_bytes(file("cifar/data_batch_3.bin"), std::string(3073 * 2 - 7, '\1'));
  r = run("cnn train --data cifar10:" + file("cifar") + " --lr 0.01 --batch 2 --device cpu");
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("data_batch_3.bin"), std::string::npos) << r.err;
  r = run("cnn train --data cifar10:" + file("no_such_dir") + " --lr 0.01 --batch 2 --device cpu");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no such directory"), std::string::npos) << r.err;
  // A diverged run never replaces the last good checkpoint (nor writes --save-params).
  const std::string good = slurp(file("ck.npy"));
  r = run("cnn train " + common + " --lr 1e200 --batch 2 --max-steps 5 --checkpoint " + file("ck.npy") +
          " --save-params " + file("nan.npy"));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(slurp(file("ck.npy")), good);
  EXPECT_TRUE(json::parse(r.out)["files"].contains("checkpoint_not_updated")) << r.out;
  EXPECT_TRUE(slurp(file("nan.npy")).empty());
  // Options are checked before training: nothing is written, exit 2.
  r = run("cnn analyze " + common + " --lr 0.02 --batch 2 --max-steps 1 --geometry dense --save-params " +
          file("early.npy"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(slurp(file("early.npy")).empty());
  // Inapplicable or inconsistent options are usage errors, nothing on stdout.
  for (const std::string bad : {train + "--checkpoint-every 5", train + "--log-every 5",
                                "cnn analyze " + common + " --params " + file("al.csv"),
                                "cnn analyze " + common + " --params " + file("ck.npy") + " --checkpoint " + file("x.npy"),
                                "cnn sweep " + common + " --lrs 0.1 --batches 9 --out " + file("s2"),
                                "cnn sweep " + common + " --lrs 0.1,-1 --batches 2 --out " + file("s2"),
                                "cnn sweep " + common + " --lrs 0.1 --batches 2 --out /proc/no/such",
                                "cnn sweep " + common + " --lrs 0.1,0.10 --batches 2 --out " + file("s3"),
                                "cnn sweep " + common + " --lrs 0.1 --batches 2,2 --out " + file("s3"),
                                "cnn analyze " + common + " --params " + file("ck.npy") + " --lr 0.1",
                                "cnn analyze " + common + " --params " + file("ck.npy") + " --log-every 3",
                                "cnn train " + common + " --lr 0.1 --batch 2 --scaling unit",
                                "cnn analyze " + common + " --lr 0.1 --batch 99"}) {
    const CliRun b = run(bad);
    EXPECT_NE(b.code, 0) << bad;
    EXPECT_TRUE(b.out.empty()) << bad << "\n" << b.out;
    EXPECT_FALSE(b.err.empty()) << bad;
  }
#else
  GTEST_SKIP() << "this build has no LibTorch module";
#endif
}

// Well-formed XML, checked by hand: every element closed in order, quoted
// attributes, no raw '<' or stray '&' in text. Returns the error or "".
std::string xml_error(const std::string& x) {
  std::vector<std::string> open;
  std::size_t i = 0;
  while (i < x.size()) {
    if (x[i] != '<') {
      if (x[i] == '&') {
        const std::size_t semi = x.find(';', i);
        if (semi == std::string::npos || semi - i > 6) return "stray & at " + std::to_string(i);
      }
      ++i;
      continue;
    }
    const std::size_t close = x.find('>', i);
    if (close == std::string::npos) return "unterminated tag at " + std::to_string(i);
    std::string tag = x.substr(i + 1, close - i - 1);
    i = close + 1;
    if (tag.empty()) return "empty tag";
    if (tag[0] == '?' || tag[0] == '!') continue;
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0) return "unbalanced quotes in <" + tag + ">";
    if (tag.find('<') != std::string::npos) return "'<' inside <" + tag + ">";
    if (tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1)) return "unexpected </" + tag.substr(1) + ">";
      open.pop_back();
      continue;
    }
    const bool self_closing = tag.back() == '/';
    const std::string name = tag.substr(0, tag.find_first_of(" /\n"));
    if (!self_closing) open.push_back(name);
  }
  return open.empty() ? "" : "unclosed <" + open.back() + ">";
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST_F(Cli, RegionJsonContractMatchesTheLibrary) {
  const MatrixXd J = ref::gaussian(16, 9, 75);  // n = 8, C = 2
  sgdstab::write_npy(file("j.npy"), J);
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);
  const CliRun r = run("region --jacobian " + file("j.npy") + " --outputs 2 --mark 0.05,2 --mark 0.5,8");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  for (const char* key : {"samples", "outputs", "rank", "lambda_max", "eta_gd", "matvecs", "seconds", "curves", "marks",
                          "converged", "status"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["samples"], 8);
  EXPECT_EQ(j["outputs"], 2);
  EXPECT_EQ(j["rank"], 9);
  EXPECT_REL_NEAR(j["eta_gd"].get<double>(), 2.0 / g.lambda_max(), 1e-12);
  ASSERT_EQ(j["curves"].size(), 3u);
  const char* names[] = {"without", "with", "bernoulli"};
  for (std::size_t k = 0; k < 3; ++k) {
    const json& curve = j["curves"][k];
    EXPECT_EQ(curve["sampling"], names[k]);
    ASSERT_EQ(curve["points"].size(), 4u);  // 1, 2, 4, 8
    for (const json& p : curve["points"]) {
      for (const char* key : {"batch", "eta_star", "eta_low", "eta_high", "converged"}) EXPECT_TRUE(p.contains(key)) << key;
      const auto b = p["batch"].get<sgdstab::Index>();
      const double single =
          sgdstab::stability_threshold(g, b, sgdstab::parse<sgdstab::Sampling>(names[k]), {}).eta_star;
      EXPECT_REL_NEAR(p["eta_star"].get<double>(), single, 1e-9) << names[k] << " B = " << b;
      EXPECT_LE(p["eta_low"].get<double>(), p["eta_star"].get<double>());
      EXPECT_GE(p["eta_high"].get<double>(), p["eta_star"].get<double>());
      EXPECT_EQ(p["converged"], true);
    }
  }
  ASSERT_EQ(j["marks"].size(), 6u);  // two marks x three schemes
  for (const json& m : j["marks"]) {
    for (const char* key : {"lr", "batch", "sampling", "stable", "rho"}) EXPECT_TRUE(m.contains(key)) << key;
    const auto s = sgdstab::parse<sgdstab::Sampling>(m["sampling"].get<std::string>());
    const double rho = sgdstab::spectral_radius(g, m["lr"].get<double>(), m["batch"].get<sgdstab::Index>(), s).rho;
    EXPECT_REL_NEAR(m["rho"].get<double>(), rho, 1e-9);
    EXPECT_EQ(m["stable"].get<bool>(), rho <= 1.0);
    const double eta = sgdstab::stability_threshold(g, m["batch"].get<sgdstab::Index>(), s).eta_star;
    EXPECT_EQ(m["stable"].get<bool>(), m["lr"].get<double>() <= eta);  // rho <= 1 iff lr <= eta*
  }
  EXPECT_EQ(j["marks"][0]["stable"], true);
  EXPECT_EQ(j["marks"][3]["stable"], false);
}

TEST_F(Cli, RegionPictureIsWellFormedWithOnePathPerScheme) {
  sgdstab::write_csv(file("j.csv"), ref::gaussian(12, 7, 76));
  for (const std::string schemes : {"without", "with,bernoulli", "without,with,bernoulli"}) {
    const std::string svg = file("region.svg");
    const CliRun r = run("region --jacobian " + file("j.csv") + " --sampling " + schemes + " --batches 1,3,12 --plot " +
                         svg + " --mark 0.01,3");
    ASSERT_EQ(r.code, 0) << r.err;
    const json j = json::parse(r.out);
    EXPECT_EQ(j["plot"], svg);
    const std::string text = slurp(svg);
    EXPECT_EQ(xml_error(text), "") << schemes;
    EXPECT_EQ(count_of(text, "<path "), j["curves"].size()) << schemes;
    EXPECT_EQ(count_of(text, "class=\"band\""), j["curves"].size());
    EXPECT_EQ(count_of(text, "class=\"mark\""), j["curves"].size());
    EXPECT_EQ(count_of(text, "class=\"eta-gd\""), 1u);
    EXPECT_EQ(count_of(text, "class=\"bound-sufficient\""), j["curves"].size());
  }
  EXPECT_NE(xml_error("<svg><g></svg>"), "");  // the checker itself can fail
  EXPECT_NE(xml_error("<svg a=\"1></svg>"), "");
}

TEST_F(Cli, RegionErrorsWriteNothing) {
  sgdstab::write_csv(file("j.csv"), ref::gaussian(6, 4, 77));
  const std::string j = "region --jacobian " + file("j.csv");
  const std::string svg = file("never.svg");
  const std::pair<std::string, std::string> cases[] = {
      {j + " --mark 0.1", "expected LR,B"},
      {j + " --mark 0.1,2,3", "expected LR,B"},
      {j + " --mark -0.1,2", "must be > 0"},
      {j + " --mark 0.1,9", "1 <= B <= n = 6"},
      {j + " --mark x,2", "expected a finite number"},
      {j + " --sampling without,sometimes", "without|with|bernoulli"},
      {j + " --sampling with,with", "'with' is repeated"},
      {j + " --batches 1,2,2", "batch size 2 is repeated"},
      {j + " --batches 0,2", "1 <= B <= n = 6"},
      {j + " --batches 1 --batches 2", "given twice"},
      {j + " --tol 2", "tolerance"},
  };
  for (const auto& [args, msg] : cases) {
    const CliRun r = run(args + " --plot " + svg);
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_TRUE(r.out.empty()) << args << " printed: " << r.out;
    EXPECT_NE(r.err.find(msg), std::string::npos) << args << " said: " << r.err;
    EXPECT_FALSE(testing_files::exists(svg)) << args;
  }
  const CliRun bad_dir = run(j + " --plot /proc/no/such/region.svg");
  EXPECT_EQ(bad_dir.code, 1);
  EXPECT_TRUE(bad_dir.out.empty());
  EXPECT_NE(bad_dir.err.find("/proc/no/such/region.svg"), std::string::npos) << bad_dir.err;
}

}  // namespace
#endif

TEST_F(Cli, MomentumOnRegionAndMonteCarlo) {
  // region --momentum: every point is the library's momentum_threshold, the
  // marks are judged by momentum SGD's radius, the picture has no plain-SGD
  // bounds; montecarlo --momentum: the exact rho, eta* and moments are
  // momentum SGD's and the verdict agrees.
  const MatrixXd J = ref::gaussian(12, 7, 79);  // n = 6, C = 2
  sgdstab::write_npy(file("j.npy"), J);
  const auto g = sgdstab::Geometry::from_jacobian(J, 2);
  const sgdstab::Momentum mo{0.9, true};
  const std::string svg = file("momentum.svg");
  CliRun r = run("region --jacobian " + file("j.npy") + " --outputs 2 --batches 1,2,6 --momentum 0.9 --nesterov "
                 "--mark 0.05,2 --plot " + svg);
  ASSERT_EQ(r.code, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["momentum"], 0.9);
  EXPECT_EQ(j["nesterov"], true);
  EXPECT_REL_NEAR(j["eta_mean"].get<double>(), 2 * 1.9 / 2.8 / g.lambda_max(), 1e-12);
  const char* names[] = {"without", "with", "bernoulli"};
  for (std::size_t k = 0; k < 3; ++k)
    for (const json& p : j["curves"][k]["points"]) {
      const auto b = p["batch"].get<sgdstab::Index>();
      const auto s = sgdstab::parse<sgdstab::Sampling>(names[k]);
      EXPECT_REL_NEAR(p["eta_star"].get<double>(), sgdstab::momentum_threshold(g, b, s, mo).eta_star, 1e-9)
          << names[k] << " B = " << b;
    }
  ASSERT_EQ(j["marks"].size(), 3u);
  for (std::size_t k = 0; k < 3; ++k) {
    const double rho = sgdstab::momentum_spectral_radius(g, 0.05, 2, sgdstab::parse<sgdstab::Sampling>(names[k]), mo).rho;
    EXPECT_REL_NEAR(j["marks"][k]["rho"].get<double>(), rho, 1e-9);
    EXPECT_EQ(j["marks"][k]["stable"], rho <= 1.0);
  }
  const std::string text = slurp(svg);
  EXPECT_EQ(xml_error(text), "");
  EXPECT_EQ(count_of(text, "<path "), 3u);
  EXPECT_EQ(count_of(text, "class=\"bound-sufficient\""), 0u);
  EXPECT_NE(text.find("Nesterov momentum 0.9"), std::string::npos);
  // The plain region of the same file differs: momentum is not ignored.
  const json plain = json::parse(run("region --jacobian " + file("j.npy") + " --outputs 2 --batches 1,2,6").out);
  EXPECT_EQ(plain["momentum"], 0.0);
  EXPECT_GT(std::abs(plain["curves"][0]["points"][1]["eta_star"].get<double>() /
                         j["curves"][0]["points"][1]["eta_star"].get<double>() - 1.0), 0.05);

  // 20000 trajectories: with 500, |delta_t|^2 here is heavy-tailed enough
  // that its sample mean runs 25 % below the exact one (montecarlo.hpp).
  const double eta_star = sgdstab::momentum_threshold(g, 2, sgdstab::Sampling::with_replacement, mo).eta_star;
  for (double factor : {0.8, 1.2}) {
    r = run("montecarlo --jacobian " + file("j.npy") + " --outputs 2 --batch 2 --sampling with --momentum 0.9 "
            "--nesterov --steps 20 --trajectories 20000 --blocks 500 --quiet --lr " + std::to_string(factor * eta_star));
    ASSERT_EQ(r.code, 0) << r.err;
    j = json::parse(r.out);
    EXPECT_EQ(j["momentum"], 0.9);
    EXPECT_EQ(j["nesterov"], true);
    EXPECT_EQ(j["verdict"], "agree") << j["reason"];
    EXPECT_REL_NEAR(j["eta_star"].get<double>(), eta_star, 1e-9);
    const double rho = sgdstab::momentum_spectral_radius(g, j["lr"].get<double>(), 2,
                                                         sgdstab::Sampling::with_replacement, mo).rho;
    EXPECT_REL_NEAR(j["rho"].get<double>(), rho, 1e-9);
  }
  r = run("montecarlo --jacobian " + file("j.npy") + " --outputs 2 --batch 2 --lr 0.01 --momentum -0.1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--momentum: must satisfy 0 <= beta < 1, got '-0.1'"), std::string::npos) << r.err;
  r = run("region --jacobian " + file("j.npy") + " --outputs 2 --nesterov");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--nesterov needs --momentum"), std::string::npos) << r.err;
}

// analyze --momentum on the one-dimensional problem of curvatures 1, 4, 9:
// B = 1 against the first crossing of rho(E[M_i (x) M_i]) = 1 over the three
// samples (4 x 4, bisection), B = n against 2(1 + beta) / lambda.
TEST_F(Cli, AnalyzeWithMomentumGivesTheOneDimensionalReference) {
  const CliRun r = run("analyze --model linear --widths 1,1 --data curvatures:1,4,9 --batches 1,3 --momentum 0.5");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["stability"]["momentum"], 0.5);
  EXPECT_FALSE(j.contains("bounds"));
  const double a[] = {1.0, 4.0, 9.0}, beta = 0.5;
  auto rho = [&](double eta) {
    Eigen::Matrix4d k = Eigen::Matrix4d::Zero();
    for (double ai : a) {
      Eigen::Matrix2d m;
      m << 1 - eta * ai, -beta, eta * ai, beta;
      for (int p = 0; p < 2; ++p)
        for (int q = 0; q < 2; ++q) k.block<2, 2>(2 * p, 2 * q) += m(p, q) * m / 3.0;
    }
    return ref::EigenSolver(k).eigenvalues().cwiseAbs().maxCoeff();
  };
  const double eta_mean = 2 * (1 + beta) / (14.0 / 3.0);
  double lo = 0, hi = eta_mean;
  for (int k = 1; k < 400; ++k)
    if (rho(eta_mean * k / 400) >= 1) {
      hi = eta_mean * k / 400;
      lo = eta_mean * (k - 1) / 400;
      break;
    }
  for (int it = 0; it < 60; ++it) (rho(0.5 * (lo + hi)) < 1 ? lo : hi) = 0.5 * (lo + hi);
  EXPECT_REL_NEAR(j["stability"]["points"][0]["eta_star"].get<double>(), lo, 1e-9);
  EXPECT_REL_NEAR(j["stability"]["points"][1]["eta_star"].get<double>(), eta_mean, 1e-12);
  EXPECT_LT(lo, 0.99 * eta_mean);  // the noise matters at B = 1
}
