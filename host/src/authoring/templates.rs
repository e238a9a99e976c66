//! The projects `bullpen new` writes, by language: each in its language's
//! own conventions, with an example processor (an order's total), tests
//! that pass as created, and a README that says how to test, build and run
//! it.

use std::path::Path;

/// A project's files: path in the project, text.
pub type Files = Vec<(&'static str, String)>;

/// The files of a Rust processor project named `name`, by path.
pub fn rust_project(name: &str, sdk: &Path) -> Files {
    let module = name.replace('-', "_");
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
# A WebAssembly component: `cargo build --release --target wasm32-wasip2`.
crate-type = ["cdylib"]

[dependencies]
bullpen-guest = {{ path = {sdk} }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A project of its own, not a member of a workspace above it.
[workspace]
"#,
        // A TOML string, escaped as TOML escapes (a path may hold `"` or `\`).
        sdk = toml::Value::from(sdk.display().to_string()),
    );
    let source = r##"//! A bullpen job processor: what `process` returns decides the job's fate.

use bullpen_guest::{Error, Job, Processor, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct Order {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    price_cents: u64,
    quantity: u32,
}

/// Totals an order: `{"items": [{"price_cents": 250, "quantity": 2}]}`.
pub struct Totals;

impl Processor for Totals {
    fn process(job: Job) -> Result<impl serde::Serialize> {
        // Data that is not an order fails for good: no retry can fix it.
        let order: Order = job
            .data()
            .map_err(|e| Error::unrecoverable(format!("not an order: {e}")))?;
        let total: u64 = order
            .items
            .iter()
            .map(|item| item.price_cents * u64::from(item.quantity))
            .sum();
        Ok(serde_json::json!({ "total_cents": total }))
    }
}

bullpen_guest::export!(Totals);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_totalled() {
        let job = Job::for_test(r#"{"items": [{"price_cents": 250, "quantity": 2}, {"price_cents": 99, "quantity": 1}]}"#);
        let value = serde_json::to_value(Totals::process(job).ok().unwrap()).unwrap();
        assert_eq!(value, serde_json::json!({ "total_cents": 599 }));
    }

    #[test]
    fn what_is_not_an_order_fails_for_good() {
        let job = Job::for_test(r#"{"items": "none"}"#);
        assert!(Totals::process(job).is_err());
    }
}
"##
    .to_owned();
    let readme = format!(
        r#"# {name}

A [bullpen](https://github.com/bullpen-rs/bullpen) job processor in Rust.

```sh
cargo test                          # the processor's own tests, natively
bullpen build -o {module}.wasm      # cargo build --release --target wasm32-wasip2, then a check
bullpen exec {module}.wasm --data '{{"items": [{{"price_cents": 250, "quantity": 2}}]}}'
```

To run it on a BullMQ queue, copy the `.wasm` into bullpen's module
directory and bind it in `bullpen.toml`:

```toml
[queues.orders]
module = "{module}.wasm"
```
"#
    );
    vec![
        ("Cargo.toml", manifest),
        ("src/lib.rs", source),
        ("README.md", readme),
        (".gitignore", "/target\n".to_owned()),
    ]
}

/// The files of a TypeScript (`typescript`) or JavaScript processor
/// project named `name` whose `bullpen` dependency is `sdk` (an npm
/// package spec: `file:` a packed tarball).
pub fn script_project(name: &str, sdk: &str, typescript: bool) -> Files {
    let module = name.replace('-', "_");
    let ext = if typescript { "ts" } else { "js" };
    let (test_script, dev) = if typescript {
        (
            "tsc --noEmit && node --import tsx --test test/*.test.ts",
            r#",
  "devDependencies": {
    "@types/node": "^20",
    "tsx": "^4",
    "typescript": "^5"
  }"#,
        )
    } else {
        ("node --test test/", "")
    };
    let manifest = format!(
        r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "main": "src/processor.{ext}",
  "scripts": {{
    "test": "{test_script}",
    "build": "bullpen build -o {module}.wasm"
  }},
  "dependencies": {{
    "bullpen": {sdk}
  }}{dev}
}}
"#,
        sdk = serde_json::Value::from(sdk),
    );
    let source = if typescript {
        r#"// A bullpen job processor: what `process` returns or throws decides the
// job's fate, as in a BullMQ worker.
import { UnrecoverableError, type Job } from 'bullpen';

interface Item {
  price_cents: number;
  quantity: number;
}

export interface Order {
  items: Item[];
}

export interface Totals {
  total_cents: number;
}

/** Totals an order: `{"items": [{"price_cents": 250, "quantity": 2}]}`. */
export async function process(job: Job<Order, Totals>): Promise<Totals> {
  // Data that is not an order fails for good: no retry can fix it.
  if (!Array.isArray(job.data?.items)) {
    throw new UnrecoverableError('not an order: "items" is not a list');
  }
  const total = job.data.items.reduce((sum, item) => sum + item.price_cents * item.quantity, 0);
  await job.log(`${job.data.items.length} items`);
  return { total_cents: total };
}
"#
    } else {
        r#"// A bullpen job processor: what `process` returns or throws decides the
// job's fate, as in a BullMQ worker.
import { UnrecoverableError } from 'bullpen';

/** Totals an order: `{"items": [{"price_cents": 250, "quantity": 2}]}`. */
export async function process(job) {
  // Data that is not an order fails for good: no retry can fix it.
  if (!Array.isArray(job.data?.items)) {
    throw new UnrecoverableError('not an order: "items" is not a list');
  }
  const total = job.data.items.reduce((sum, item) => sum + item.price_cents * item.quantity, 0);
  await job.log(`${job.data.items.length} items`);
  return { total_cents: total };
}
"#
    };
    let cast = if typescript { " as never" } else { "" };
    let test = format!(
        r#"// The processor's own tests: `npm test`, in Node, without Redis.
import {{ test }} from 'node:test';
import assert from 'node:assert/strict';
import {{ UnrecoverableError }} from 'bullpen';
import {{ testJob }} from 'bullpen/testing';
import {{ process }} from '../src/processor.{ext}';

test('an order is totalled', async () => {{
  const job = testJob({{ items: [{{ price_cents: 250, quantity: 2 }}, {{ price_cents: 99, quantity: 1 }}] }});
  assert.deepEqual(await process(job), {{ total_cents: 599 }});
  assert.deepEqual(job.logs, ['2 items']);
}});

test('what is not an order fails for good', async () => {{
  await assert.rejects(process(testJob({{ items: 'none' }}{cast})), UnrecoverableError);
}});
"#
    );
    let language = if typescript {
        "TypeScript"
    } else {
        "JavaScript"
    };
    let readme = format!(
        r#"# {name}

A [bullpen](https://github.com/bullpen-rs/bullpen) job processor in {language}.

```sh
npm install                 # the bullpen SDK{dev_note}
npm test                    # the processor's own tests, in Node, without Redis
bullpen build -o {module}.wasm
bullpen exec {module}.wasm --data '{{"items": [{{"price_cents": 250, "quantity": 2}}]}}'
```

`bullpen build` bundles `src/processor.{ext}` and what it imports (npm
packages included) with esbuild, and embeds it in SpiderMonkey. To run it on
a BullMQ queue, copy the `.wasm` into bullpen's module directory and bind it
in `bullpen.toml`:

```toml
[queues.orders]
module = "{module}.wasm"
```
"#,
        dev_note = if typescript {
            ", TypeScript and tsx"
        } else {
            ""
        },
    );
    let mut files = vec![
        ("package.json", manifest),
        (
            if typescript {
                "src/processor.ts"
            } else {
                "src/processor.js"
            },
            source.to_owned(),
        ),
        (
            if typescript {
                "test/processor.test.ts"
            } else {
                "test/processor.test.js"
            },
            test,
        ),
        ("README.md", readme),
        (
            ".gitignore",
            "node_modules/\n*.wasm\n.bullpen/\n".to_owned(),
        ),
    ];
    if typescript {
        files.push((
            "tsconfig.json",
            r#"{
  "compilerOptions": {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "noEmit": true,
    "allowImportingTsExtensions": true,
    "skipLibCheck": true,
    "types": ["node"]
  },
  "include": ["src", "test"]
}
"#
            .to_owned(),
        ));
    }
    files
}

/// The files of a Python processor project named `name`, depending on the
/// SDK wheel at `sdk`.
pub fn python_project(name: &str, sdk: &Path) -> Files {
    let module = name.replace('-', "_");
    // A PEP 508 direct reference (a URL: what a path may hold that a URL
    // may not, escaped), as a TOML string.
    let url: String = sdk
        .display()
        .to_string()
        .chars()
        .map(|c| match c {
            ' ' | '"' | '#' | '%' | '<' | '>' | '?' | '[' | ']' | '\\' | '^' | '`' | '{' | '|'
            | '}' => {
                format!("%{:02X}", c as u32)
            }
            c => c.to_string(),
        })
        .collect();
    let sdk_requirement = toml::Value::from(format!("bullpen @ file://{url}"));
    let manifest = format!(
        r#"[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.11"
# What the processor imports. `bullpen build` bundles these from PyPI
# (pure-Python wheels only); the bullpen SDK itself it takes from the
# bullpen that builds, so the component speaks that host's contract.
dependencies = [
    {sdk_requirement},
]

[project.optional-dependencies]
test = ["pytest>=8"]

[tool.bullpen]
processor = "processor.py"

[tool.pytest.ini_options]
testpaths = ["tests"]

# Installs the processor module for its tests: `pip install -e '.[test]'`.
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[tool.setuptools]
py-modules = ["processor"]
"#
    );
    let source = r#""""A bullpen job processor: what ``process`` returns or raises decides the
job's fate, as in a BullMQ worker."""

from bullpen import UnrecoverableError


async def process(job):
    """Totals an order: ``{"items": [{"price_cents": 250, "quantity": 2}]}``."""
    items = job.data.get("items") if isinstance(job.data, dict) else None
    # Data that is not an order fails for good: no retry can fix it.
    if not isinstance(items, list):
        raise UnrecoverableError('not an order: "items" is not a list')
    total = sum(item["price_cents"] * item["quantity"] for item in items)
    await job.log(f"{len(items)} items")
    return {"total_cents": total}
"#;
    let test = r#""""The processor's own tests: `pytest`, without Redis or a component."""

from bullpen.testing import run, test_job

import processor


def test_an_order_is_totalled():
    job = test_job({"items": [{"price_cents": 250, "quantity": 2}, {"price_cents": 99, "quantity": 1}]})
    outcome = run(processor, job)
    assert outcome.kind == "completed"
    assert outcome.value == {"total_cents": 599}
    assert job.logs == ["2 items"]


def test_what_is_not_an_order_fails_for_good():
    outcome = run(processor, test_job({"items": "none"}))
    assert outcome.kind == "unrecoverable"
    assert "not an order" in outcome.reason
"#;
    let readme = format!(
        r#"# {name}

A [bullpen](https://github.com/bullpen-rs/bullpen) job processor in Python.

```sh
python3 -m venv .venv
.venv/bin/pip install -e '.[test]'   # the bullpen SDK, pytest, your dependencies
.venv/bin/pytest                      # the processor's own tests, without Redis
bullpen build -o {module}.wasm
bullpen exec {module}.wasm --data '{{"items": [{{"price_cents": 250, "quantity": 2}}]}}'
```

`bullpen.testing` runs `process` as bullpen would: `run(processor, job)`
says how the attempt ended (`completed`, `failed`, `unrecoverable`,
`rate-limited`, `delayed`, `waiting-children`), and the test job keeps what
the processor did (`logs`, `progress`, `data`, `added`, ...).

`bullpen build` embeds `processor.py`, this directory's other modules, the
PyPI packages of `dependencies` (pure-Python wheels) and the bullpen SDK in
CPython (componentize-py). To run it on a BullMQ queue, copy the `.wasm`
into bullpen's module directory and bind it in `bullpen.toml`:

```toml
[queues.orders]
module = "{module}.wasm"
```
"#
    );
    vec![
        ("pyproject.toml", manifest),
        ("processor.py", source.to_owned()),
        ("tests/test_processor.py", test.to_owned()),
        ("README.md", readme),
        (
            ".gitignore",
            ".venv/\n__pycache__/\n*.egg-info/\n*.wasm\n.bullpen/\n".to_owned(),
        ),
    ]
}
