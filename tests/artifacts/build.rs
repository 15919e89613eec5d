//! Builds the test plugins and writes a constant per component into `$OUT_DIR/plugins.rs`, so
//! tests never name a hand-built path:
//!
//! - every Rust plugin in `plugins/` (its own workspace, for wasm32-wasip2), one constant per
//!   `.wasm` it produces (`PROBE`, `NOOP`, ...);
//! - the plugins in other languages: `greet` on the raw bindings, which proves that
//!   components from other toolchains run on the host, and the order saga's steps on each
//!   language's SDK. `plugins/python` with componentize-py (`PYTHON_GREET`,
//!   `PYTHON_ORDERS`) and `plugins/js` with rolldown and componentize-js (`JS_GREET`,
//!   `JS_ORDERS`). Their tools come from PyPI and npm at the exact versions the plugins
//!   pin, installed under `target/polyglot/` on first use, so a fresh clone needs no set-up
//!   step. Any failure fails the build: a test suite that silently skipped them would prove
//!   nothing.

#[path = "src/guest.rs"]
mod guest;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let plugins = root.join("plugins");
    for watched in [
        "sdk",
        "examples",
        "tests",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
        "python/src",
        "python/orders",
        "python/sdk/flowhost",
        "python/requirements.txt",
        "js/greet",
        "js/orders",
        "js/sdk",
        "js/package.json",
        "js/package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={}", plugins.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let mut constants = String::new();
    for path in build_rust_plugins(&plugins) {
        let stem = path.file_stem().unwrap().to_string_lossy();
        let name = stem.replace('-', "_").to_uppercase();
        constants.push_str(&constant(&name, &path, &format!("`{stem}.wasm`")));
    }
    for (name, path, what) in build_polyglot_plugins(&root) {
        constants.push_str(&constant(name, &path, what));
    }
    // The tools themselves, for tests that build or check JS and Python code of their own.
    let tools = root.join("target/polyglot");
    constants.push_str(&format!(
        "/// The JS tools (`node_modules` of `plugins/js/package.json`).\npub const JS_TOOLS: &str = {:?};\n\
         /// The Python tools (componentize-py), a `PYTHONPATH` entry.\npub const PYTHON_TOOLS: &str = {:?};\n",
        tools.join("js").display().to_string(),
        tools.join("py").display().to_string(),
    ));
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("plugins.rs");
    std::fs::write(out, constants).unwrap();
}

/// One `pub const NAME: &str = "<path>";` with its doc line.
fn constant(name: &str, path: &Path, what: &str) -> String {
    format!(
        "/// {what}, built from `plugins/`.\npub const {name}: &str = {:?};\n",
        path.display().to_string()
    )
}

/// Builds the `plugins/` workspace for wasm32-wasip2 and returns its components, sorted.
fn build_rust_plugins(plugins: &Path) -> Vec<PathBuf> {
    ensure_wasm_target();
    let target_dir = plugins.join("target");
    let mut build = guest::cargo();
    build
        .current_dir(plugins)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    let output = build.output().expect("running cargo for the plugins");
    if !output.status.success() {
        panic!(
            "building plugins/ failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let release = target_dir.join("wasm32-wasip2/release");
    let mut components: Vec<PathBuf> = std::fs::read_dir(&release)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm"))
        .collect();
    components.sort();
    components
}

/// Installs the `wasm32-wasip2` standard library with rustup when the toolchain lacks it, so
/// that `cargo test` on a fresh clone needs no set-up step.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .expect("running rustc");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib/wasm32-wasip2").exists() {
        return;
    }
    println!("cargo:warning=installing the wasm32-wasip2 target with rustup");
    let status = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
        .expect("running rustup (install the wasm32-wasip2 target by hand without it)");
    assert!(status.success(), "`rustup target add wasm32-wasip2` failed");
}

/// One component in another language: its constant, what it is, and where its code is.
struct Polyglot {
    constant: &'static str,
    what: &'static str,
    /// Python: the app module and the folders on its path, under `plugins/python`. JS: the
    /// entry module under `plugins/js`.
    sources: &'static [&'static str],
}

impl Polyglot {
    /// Where it is built: `<work>/<constant in lower case>.wasm`.
    fn output(&self, work: &Path) -> PathBuf {
        work.join(format!("{}.wasm", self.constant.to_lowercase()))
    }
}

const PYTHON: [Polyglot; 2] = [
    Polyglot {
        constant: "PYTHON_GREET",
        what: "The Python plugin `greet` (componentize-py)",
        sources: &["app", "src"],
    },
    Polyglot {
        constant: "PYTHON_ORDERS",
        what: "The order saga's steps on the Python SDK (componentize-py)",
        sources: &["app", "orders", "sdk"],
    },
];

const JS: [Polyglot; 2] = [
    Polyglot {
        constant: "JS_GREET",
        what: "The JS plugin `greet` (componentize-js)",
        sources: &["greet/greet.js"],
    },
    Polyglot {
        constant: "JS_ORDERS",
        what: "The order saga's steps on the JS SDK (rolldown, componentize-js)",
        sources: &["orders/index.js"],
    },
];

/// Builds the Python and JS plugins into `target/polyglot/` and returns, for each, its
/// constant's name, its path and what it is.
///
/// Everything lives under `target/polyglot/`: the tools (`py/`, `js/`) and the components.
/// A lock file there serialises concurrent builds (`cargo test` and `cargo clippy` run this
/// script at the same time, and two `pip install`s into one directory would corrupt it).
/// The two languages build on two threads: each is one single-threaded tool run of 15-30 s.
fn build_polyglot_plugins(root: &Path) -> Vec<(&'static str, PathBuf, &'static str)> {
    let work = root.join("target/polyglot");
    std::fs::create_dir_all(&work).unwrap();
    let lock = File::create(work.join(".lock")).unwrap();
    lock.lock().expect("locking target/polyglot");
    let wit = root.join("wit");
    let (python, js) = std::thread::scope(|scope| {
        let python = scope.spawn(|| build_python(&root.join("plugins/python"), &wit, &work));
        let js = scope.spawn(|| build_js(&root.join("plugins/js"), &wit, &work));
        (python.join(), js.join())
    });
    // A failing thread has printed its panic; both ran to the end, so one language's failure
    // never hides the other's.
    let (Ok(python), Ok(js)) = (python, js) else {
        panic!("building the Python or JS test plugins failed: see the messages above");
    };
    PYTHON
        .iter()
        .zip(python)
        .chain(JS.iter().zip(js))
        .map(|(plugin, path)| (plugin.constant, path, plugin.what))
        .collect()
}

/// `plugins/python` → `target/polyglot/<constant>.wasm` for each of [`PYTHON`], with
/// componentize-py.
///
/// componentize-py is a Python package with a native extension; `pip install --target` puts
/// exactly the version (and file hashes) of `requirements.txt` into `target/polyglot/py`,
/// reinstalled only when `requirements.txt` changes (a copy of it marks the install). It
/// runs with that directory on `PYTHONPATH`, so nothing touches the user's Python.
fn build_python(plugin: &Path, wit: &Path, work: &Path) -> Vec<PathBuf> {
    let requirements = plugin.join("requirements.txt");
    let tools = work.join("py");
    let stamp = tools.join("requirements.installed");
    if !same_contents(&requirements, &stamp) {
        println!(
            "cargo:warning=installing componentize-py into {}",
            tools.display()
        );
        if tools.exists() {
            std::fs::remove_dir_all(&tools).unwrap();
        }
        run(
            Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--no-deps",
                    "--require-hashes",
                    "--target",
                ])
                .arg(&tools)
                .arg("-r")
                .arg(&requirements),
            "installing componentize-py (needs python3 >= 3.9 with pip, and PyPI)",
        );
        std::fs::copy(&requirements, &stamp).unwrap();
    }

    PYTHON
        .iter()
        .map(|component| componentize_python(component, plugin, wit, work, &stamp))
        .collect()
}

/// One Python component: its app module, from its folders.
fn componentize_python(
    component: &Polyglot,
    plugin: &Path,
    wit: &Path,
    work: &Path,
    stamp: &Path,
) -> PathBuf {
    let [app, folders @ ..] = component.sources else {
        unreachable!("a Python component names its app module")
    };
    let out = component.output(work);
    let folders: Vec<PathBuf> = folders.iter().map(|f| plugin.join(f)).collect();
    let mut inputs: Vec<&Path> = folders.iter().map(PathBuf::as_path).collect();
    inputs.extend([wit, stamp]);
    if is_fresh(&out, &inputs) {
        return out;
    }
    // componentize-py writes `__pycache__` next to the sources it imports (whatever
    // PYTHONDONTWRITEBYTECODE says), which would make cargo rerun this script every time:
    // it builds from a copy.
    let mut command = Command::new("python3");
    command
        .args([
            "-c",
            "import sys, componentize_py; sys.exit(componentize_py.script())",
        ])
        .args(["--wit-path"])
        .arg(wit)
        .args(["--world", "step-plugin", "--quiet", "componentize", app]);
    let copies = work.join("py-src").join(component.constant);
    for folder in &folders {
        let copy = copies.join(folder.file_name().unwrap());
        copy_dir(folder, &copy);
        command.arg("--python-path").arg(copy);
    }
    let tmp = out.with_extension("wasm.tmp");
    run(
        command
            .arg("--output")
            .arg(&tmp)
            .env("PYTHONPATH", work.join("py")),
        &format!("building {} with componentize-py", component.constant),
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// `plugins/js` → `target/polyglot/<constant>.wasm` for each of [`JS`]: rolldown bundles
/// the entry module with what it imports (the SDK), then componentize-js builds the bundle.
///
/// componentize-js is an npm package (SpiderMonkey compiled to wasm, plus wizer); `npm ci`
/// installs exactly what `package-lock.json` pins into `target/polyglot/js`, from copies of
/// the plugin's `package.json` and lock file, so no `node_modules` appears in the source tree.
/// It is reinstalled only when the lock file changes (a copy of it marks the install).
fn build_js(plugin: &Path, wit: &Path, work: &Path) -> Vec<PathBuf> {
    let tools = work.join("js");
    let lock = plugin.join("package-lock.json");
    let stamp = tools.join("package-lock.installed");
    if !same_contents(&lock, &stamp) {
        println!(
            "cargo:warning=installing componentize-js into {}",
            tools.display()
        );
        if tools.exists() {
            std::fs::remove_dir_all(&tools).unwrap();
        }
        std::fs::create_dir_all(&tools).unwrap();
        std::fs::copy(plugin.join("package.json"), tools.join("package.json")).unwrap();
        std::fs::copy(&lock, tools.join("package-lock.json")).unwrap();
        run(
            Command::new("npm")
                .args([
                    "ci",
                    "--include=dev",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ])
                .current_dir(&tools),
            "installing componentize-js (needs node >= 20 with npm, and the npm registry)",
        );
        std::fs::copy(&lock, &stamp).unwrap();
    }

    JS.iter()
        .map(|component| componentize_js(component, plugin, wit, work, &stamp))
        .collect()
}

/// The host interfaces a JS plugin imports, which the bundle leaves to componentize-js.
const HOST_INTERFACES: &str = "flowhost:plugin/cache@0.1.0,flowhost:plugin/config@0.1.0,\
    flowhost:plugin/events@0.1.0,flowhost:plugin/log@0.1.0,flowhost:plugin/services@0.1.0";

/// One JS component: its entry module, bundled, then built.
fn componentize_js(
    component: &Polyglot,
    plugin: &Path,
    wit: &Path,
    work: &Path,
    stamp: &Path,
) -> PathBuf {
    let out = component.output(work);
    let entry = plugin.join(component.sources[0]);
    let folder = entry.parent().unwrap();
    let sdk = plugin.join("sdk");
    if is_fresh(&out, &[folder, sdk.as_path(), wit, stamp]) {
        return out;
    }
    let modules = work.join("js/node_modules");
    let bundle = out.with_extension("js");
    run(
        Command::new("node")
            .arg(modules.join("rolldown/bin/cli.mjs"))
            .arg(&entry)
            .arg("--file")
            .arg(&bundle)
            .args(["--format", "esm", "--platform", "neutral", "--external"])
            .arg(HOST_INTERFACES),
        &format!("bundling {} with rolldown", component.constant),
    );
    let tmp = out.with_extension("wasm.tmp");
    run(
        Command::new("node")
            .arg(modules.join("@bytecodealliance/componentize-js/src/cli.js"))
            .arg(&bundle)
            .arg("--wit")
            .arg(wit)
            .args(["--world-name", "step-plugin", "--out"])
            .arg(&tmp),
        &format!("building {} with componentize-js", component.constant),
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// Runs `command`; on failure (or if it cannot start) panics with `what`, the command and
/// everything it printed.
fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{what}: {command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Replaces `to` with a copy of the directory `from`.
fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Whether both files exist with the same bytes.
fn same_contents(a: &Path, b: &Path) -> bool {
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(a), Ok(b)) if a == b)
}

/// Whether `output` exists and is newer than every file under `inputs`.
fn is_fresh(output: &Path, inputs: &[&Path]) -> bool {
    let Ok(built) = std::fs::metadata(output).and_then(|m| m.modified()) else {
        return false;
    };
    inputs.iter().all(|input| newest(input) < built)
}

/// The newest modification time of `path` and everything under it.
fn newest(path: &Path) -> SystemTime {
    let metadata =
        std::fs::metadata(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut newest = metadata.modified().unwrap();
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            newest = newest.max(self::newest(&entry.unwrap().path()));
        }
    }
    newest
}
