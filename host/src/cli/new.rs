//! `flowhost new step|handler NAME --lang rust|js|python`: a plugin project that builds
//! offline into a component with one command, and tests itself with `flowhost step run` or
//! `flowhost handler run`.
//!
//! A project holds the template of its language and kind (`templates/` in the repository),
//! a copy of the WIT and of its language's SDK, and, for Rust, the lock file of the
//! repository's plugins, so the toolchain versions are those the test build pins. Everything
//! is embedded in this binary: `new` needs neither the repository nor the network.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

/// `flowhost new ...`.
#[derive(Args, Debug)]
pub struct New {
    /// What the plugin serves: saga steps or events.
    pub kind: Kind,
    /// The plugin's name (and its step's): lower-case letters, digits, `-` and `_`,
    /// starting with a letter.
    pub name: String,
    /// The language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where to write the project; default `./NAME`. It must not exist, or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// What a plugin serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A saga step (world `step-plugin`).
    Step,
    /// An event handler (world `handler-plugin`).
    Handler,
}

/// The languages a project can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
}

/// One file of a project: its path in the project, and its text. A template's files have
/// `{{...}}` placeholders; the WIT, the SDKs and the pins are copied as they are.
type File = (&'static str, &'static str);

/// Embeds files of the repository, each under the path it takes in a project.
macro_rules! embed {
    ($($path:literal => $source:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../../", $source)))),*]
    };
}

const WIT: &[File] = embed![
    "wit/cache.wit" => "wit/cache.wit",
    "wit/config.wit" => "wit/config.wit",
    "wit/events.wit" => "wit/events.wit",
    "wit/log.wit" => "wit/log.wit",
    "wit/services.wit" => "wit/services.wit",
    "wit/types.wit" => "wit/types.wit",
    "wit/world.wit" => "wit/world.wit",
];

const STEP_TESTS: &[File] = embed![
    "tests/input.json" => "templates/tests/input.json",
    "tests/expected.json" => "templates/tests/expected.json",
];
const HANDLER_TESTS: &[File] = embed!["tests/event.json" => "templates/tests/event.json"];

const RUST: &[File] = embed![
    "Cargo.toml" => "templates/rust/Cargo.toml",
    ".cargo/config.toml" => "templates/rust/.cargo/config.toml",
    ".gitignore" => "templates/rust/gitignore",
    "README.md" => "templates/rust/README.md",
    "sdk/Cargo.toml" => "templates/rust/sdk.Cargo.toml",
];
const RUST_SDK: &[File] = embed![
    "Cargo.lock" => "plugins/Cargo.lock",
    "sdk/README.md" => "plugins/sdk/README.md",
    "sdk/src/bindings.rs" => "plugins/sdk/src/bindings.rs",
    "sdk/src/cache.rs" => "plugins/sdk/src/cache.rs",
    "sdk/src/config.rs" => "plugins/sdk/src/config.rs",
    "sdk/src/events.rs" => "plugins/sdk/src/events.rs",
    "sdk/src/handler.rs" => "plugins/sdk/src/handler.rs",
    "sdk/src/lib.rs" => "plugins/sdk/src/lib.rs",
    "sdk/src/log.rs" => "plugins/sdk/src/log.rs",
    "sdk/src/prelude.rs" => "plugins/sdk/src/prelude.rs",
    "sdk/src/services.rs" => "plugins/sdk/src/services.rs",
    "sdk/src/step.rs" => "plugins/sdk/src/step.rs",
];
const RUST_STEP: &[File] = embed!["src/lib.rs" => "templates/rust/step.rs"];
const RUST_HANDLER: &[File] = embed!["src/lib.rs" => "templates/rust/handler.rs"];

const JS: &[File] = embed![
    "package.json" => "templates/js/package.json",
    ".gitignore" => "templates/js/gitignore",
    "README.md" => "templates/js/README.md",
];
const JS_SDK: &[File] = embed![
    "package-lock.json" => "plugins/js/package-lock.json",
    "sdk/package.json" => "plugins/js/sdk/package.json",
    "sdk/index.js" => "plugins/js/sdk/index.js",
    "sdk/index.d.ts" => "plugins/js/sdk/index.d.ts",
    "sdk/wit/step-plugin.d.ts" => "plugins/js/sdk/wit/step-plugin.d.ts",
    "sdk/wit/handler-plugin.d.ts" => "plugins/js/sdk/wit/handler-plugin.d.ts",
    "sdk/wit/interfaces/flowhost-plugin-cache.d.ts" => "plugins/js/sdk/wit/interfaces/flowhost-plugin-cache.d.ts",
    "sdk/wit/interfaces/flowhost-plugin-config.d.ts" => "plugins/js/sdk/wit/interfaces/flowhost-plugin-config.d.ts",
    "sdk/wit/interfaces/flowhost-plugin-event-handler.d.ts" => "plugins/js/sdk/wit/interfaces/flowhost-plugin-event-handler.d.ts",
    "sdk/wit/interfaces/flowhost-plugin-events.d.ts" => "plugins/js/sdk/wit/interfaces/flowhost-plugin-events.d.ts",
    "sdk/wit/interfaces/flowhost-plugin-log.d.ts" => "plugins/js/sdk/wit/interfaces/flowhost-plugin-log.d.ts",
    "sdk/wit/interfaces/flowhost-plugin-saga-step.d.ts" => "plugins/js/sdk/wit/interfaces/flowhost-plugin-saga-step.d.ts",
    "sdk/wit/interfaces/flowhost-plugin-services.d.ts" => "plugins/js/sdk/wit/interfaces/flowhost-plugin-services.d.ts",
    "sdk/wit/interfaces/flowhost-plugin-types.d.ts" => "plugins/js/sdk/wit/interfaces/flowhost-plugin-types.d.ts",
];
const JS_STEP: &[File] = embed!["src/index.js" => "templates/js/step.js"];
const JS_HANDLER: &[File] = embed!["src/index.js" => "templates/js/handler.js"];

const PYTHON: &[File] = embed![
    ".gitignore" => "templates/python/gitignore",
    "README.md" => "templates/python/README.md",
];
const PYTHON_SDK: &[File] = embed![
    "requirements.txt" => "plugins/python/requirements.txt",
    "sdk/flowhost/__init__.py" => "plugins/python/sdk/flowhost/__init__.py",
    "sdk/flowhost/cache.py" => "plugins/python/sdk/flowhost/cache.py",
    "sdk/flowhost/config.py" => "plugins/python/sdk/flowhost/config.py",
    "sdk/flowhost/errors.py" => "plugins/python/sdk/flowhost/errors.py",
    "sdk/flowhost/events.py" => "plugins/python/sdk/flowhost/events.py",
    "sdk/flowhost/handler.py" => "plugins/python/sdk/flowhost/handler.py",
    "sdk/flowhost/log.py" => "plugins/python/sdk/flowhost/log.py",
    "sdk/flowhost/py.typed" => "plugins/python/sdk/flowhost/py.typed",
    "sdk/flowhost/services.py" => "plugins/python/sdk/flowhost/services.py",
    "sdk/flowhost/step.py" => "plugins/python/sdk/flowhost/step.py",
];
const PYTHON_STEP: &[File] = embed!["app.py" => "templates/python/step.py"];
const PYTHON_HANDLER: &[File] = embed!["app.py" => "templates/python/handler.py"];

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Step => "step",
            Self::Handler => "handler",
        }
    }

    fn world(self) -> &'static str {
        match self {
            Self::Step => "step-plugin",
            Self::Handler => "handler-plugin",
        }
    }

    /// The test cases every project of this kind gets.
    fn tests(self) -> &'static [File] {
        match self {
            Self::Step => STEP_TESTS,
            Self::Handler => HANDLER_TESTS,
        }
    }
}

/// Names a project cannot take: the vendored SDK's, and crates every Rust build has.
const RESERVED: &[&str] = &[
    "flowhost-sdk",
    "flowhost_sdk",
    "std",
    "core",
    "alloc",
    "test",
    "proc_macro",
];

/// Writes the project; what was written, and what to do next.
pub fn run(command: &New) -> anyhow::Result<String> {
    let name = &command.name;
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
    if !valid {
        bail!(
            "{name:?} is not a plugin name: lower-case letters, digits, `-` and `_`, starting with a letter"
        );
    }
    if RESERVED.contains(&name.as_str()) {
        bail!("{name:?} is taken (by the SDK, or by Rust itself): choose another name");
    }
    let dir = command.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let module = name.replace('-', "_");
    let component = match command.lang {
        Lang::Rust => format!("target/wasm32-wasip2/release/{module}.wasm"),
        Lang::Js | Lang::Python => format!("{module}.wasm"),
    };
    let test = match command.kind {
        Kind::Step => format!(
            "flowhost step run {component} --step {name} --input tests/input.json --expect tests/expected.json"
        ),
        Kind::Handler => format!("flowhost handler run {component} --event tests/event.json"),
    };
    let kind = command.kind.as_str();
    let (template, own, sdk) = match (command.lang, command.kind) {
        (Lang::Rust, Kind::Step) => (RUST, RUST_STEP, RUST_SDK),
        (Lang::Rust, Kind::Handler) => (RUST, RUST_HANDLER, RUST_SDK),
        (Lang::Js, Kind::Step) => (JS, JS_STEP, JS_SDK),
        (Lang::Js, Kind::Handler) => (JS, JS_HANDLER, JS_SDK),
        (Lang::Python, Kind::Step) => (PYTHON, PYTHON_STEP, PYTHON_SDK),
        (Lang::Python, Kind::Handler) => (PYTHON, PYTHON_HANDLER, PYTHON_SDK),
    };
    for (path, text) in [template, own, command.kind.tests()].concat() {
        let text = text
            .replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{world}}", command.kind.world())
            .replace("{{kind}}", kind)
            .replace("{{test}}", &test);
        write(&dir.join(path), &text)?;
    }
    for (path, text) in [WIT, sdk].concat() {
        let text = match path {
            // The Rust SDK binds the WIT beside it in the repository, two folders up; in a
            // project the WIT is one folder up.
            "sdk/src/bindings.rs" => text.replace("path: \"../../wit\"", "path: \"../wit\""),
            // The repository's JS tools, locked, under the project's name: `npm ci` installs
            // exactly what the test build does.
            "package-lock.json" => text.replace(
                "\"name\": \"flowhost-js-plugins\"",
                &format!("\"name\": \"{name}\""),
            ),
            _ => text.to_owned(),
        };
        write(&dir.join(path), &text)?;
    }
    let build = match command.lang {
        Lang::Rust => "cargo build --release".to_owned(),
        Lang::Js => "npm ci && npm run build".to_owned(),
        Lang::Python => format!(
            "pip install -r requirements.txt && componentize-py -d wit -w {} componentize app -p . -p sdk -o {module}.wasm",
            command.kind.world()
        ),
    };
    Ok(format!(
        "wrote {kind} plugin {name} in {}\n  build: cd {} && {build}\n  check: flowhost plugins check {component}\n  test:  {test}\n",
        dir.display(),
        dir.display()
    ))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
