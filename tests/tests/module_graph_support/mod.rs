//! The import graph of a crate's modules, and its cycles.
//!
//! Every `.rs` file under `src/` is a module (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; the
//! binaries, `main.rs` and `src/bin/`, are crates of their own and left out). A module depends on
//! another when it names it or one of its items: in a `use` (`crate::`, `super::`, `self::` or a
//! child module's name) or in a path in its code. A `pub use` re-export is not a dependency of the
//! module that re-exports: a path through it is followed to the module that defines the item.
//! Items under `#[cfg(test)]` are left out (a test may look anywhere).
//!
//! [`cycles`] lists the strongly connected components with more than one module: an empty list
//! means the modules import each other without a cycle. [`layer_cycles`] does the same for the
//! top-level modules (a crate's layers: `gateway`, `service`, ...), each standing for everything
//! under it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Module path (`a::b`; the crate root is the empty string) -> the modules it depends on.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// What one module declares: its child modules and its public re-exports.
#[derive(Debug, Default)]
struct ModuleInfo {
    children: BTreeSet<String>,
    /// Name -> absolute path it re-exports (`pub use x::Y` gives `Y -> self::x::Y`).
    reexports: BTreeMap<String, Vec<String>>,
}

/// Why a crate's graph could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// A file is not Rust that syn can parse.
    #[error("cannot parse {0}: {1}")]
    Parse(PathBuf, String),
}

/// The module import graph of the crate whose sources are in `src`.
///
/// # Errors
/// [`GraphError`] when a file cannot be read or parsed.
pub fn graph(src: &Path) -> Result<Graph, GraphError> {
    let mut files = Vec::new();
    collect(src, src, &mut files)?;
    let mut parsed = BTreeMap::new();
    for (module, file) in files {
        let text = std::fs::read_to_string(&file).map_err(|e| GraphError::Read(file.clone(), e))?;
        let ast =
            syn::parse_file(&text).map_err(|e| GraphError::Parse(file.clone(), e.to_string()))?;
        parsed.insert(module, (file, ast));
    }
    let modules: BTreeSet<String> = parsed.keys().cloned().collect();
    let mut infos: BTreeMap<String, ModuleInfo> = BTreeMap::new();
    for (module, (_, ast)) in &parsed {
        let mut info = ModuleInfo::default();
        for child in &modules {
            if parent(child).as_deref() == Some(module.as_str()) {
                info.children
                    .insert(child.rsplit("::").next().unwrap_or(child).to_string());
            }
        }
        for item in &ast.items {
            if let syn::Item::Use(u) = item
                && !is_test(&u.attrs)
                && u.leading_colon.is_none()
                && !matches!(u.vis, syn::Visibility::Inherited)
            {
                let mut leaves = Vec::new();
                use_leaves(&u.tree, Vec::new(), &mut leaves);
                for (path, name) in leaves {
                    if let Some(abs) = absolute(module, &info.children, &path) {
                        info.reexports.entry(name).or_insert(abs);
                    }
                }
            }
        }
        infos.insert(module.clone(), info);
    }
    let mut graph = Graph::new();
    for (module, (_, ast)) in &parsed {
        let info = &infos[module];
        let mut refs = Refs::default();
        for item in &ast.items {
            if item_is_test(item) {
                continue;
            }
            if let syn::Item::Use(u) = item {
                // A re-export is not a dependency of the module that re-exports.
                if !matches!(u.vis, syn::Visibility::Inherited) || u.leading_colon.is_some() {
                    continue;
                }
                let mut leaves = Vec::new();
                use_leaves(&u.tree, Vec::new(), &mut leaves);
                refs.paths.extend(leaves.into_iter().map(|(p, _)| p));
            } else {
                refs.visit_item(item);
            }
        }
        let deps = graph.entry(module.clone()).or_default();
        for path in refs.paths {
            let Some(abs) = absolute(module, &info.children, &path) else {
                continue;
            };
            if let Some(target) = resolve(&modules, &infos, &abs, 0)
                && target != *module
            {
                deps.insert(target);
            }
        }
    }
    Ok(graph)
}

/// The cycles of `graph`: each strongly connected component of more than one module.
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    tarjan(graph)
}

/// The cycles between the top-level modules (layers) of `graph`.
pub fn layer_cycles(graph: &Graph) -> Vec<Vec<String>> {
    let layer = |m: &str| m.split("::").next().unwrap_or(m).to_string();
    let mut layers = Graph::new();
    for (from, deps) in graph {
        let entry = layers.entry(layer(from)).or_default();
        for to in deps {
            if layer(to) != layer(from) {
                entry.insert(layer(to));
            }
        }
    }
    tarjan(&layers)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), GraphError> {
    let entries = std::fs::read_dir(dir).map_err(|e| GraphError::Read(dir.to_path_buf(), e))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        if rel.starts_with("bin") || rel == Path::new("main.rs") {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let mut parts: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            out.push((parts.join("::"), path));
        }
    }
    Ok(())
}

fn parent(module: &str) -> Option<String> {
    if module.is_empty() {
        return None;
    }
    Some(
        module
            .rsplit_once("::")
            .map_or(String::new(), |(p, _)| p.to_string()),
    )
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

fn item_is_test(item: &syn::Item) -> bool {
    match item {
        syn::Item::Mod(m) => is_test(&m.attrs),
        syn::Item::Fn(f) => is_test(&f.attrs),
        syn::Item::Impl(i) => is_test(&i.attrs),
        syn::Item::Use(u) => is_test(&u.attrs),
        _ => false,
    }
}

/// The paths a `use` tree names, each with the name it binds (`*` for a glob).
fn use_leaves(tree: &syn::UseTree, prefix: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    match tree {
        syn::UseTree::Path(p) => {
            let mut next = prefix;
            next.push(p.ident.to_string());
            use_leaves(&p.tree, next, out);
        }
        syn::UseTree::Name(n) => {
            let mut path = prefix;
            let name = n.ident.to_string();
            if name != "self" {
                path.push(name.clone());
            }
            let bound = if name == "self" {
                path.last().cloned().unwrap_or_default()
            } else {
                name
            };
            out.push((path, bound));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix;
            path.push(r.ident.to_string());
            out.push((path, r.rename.to_string()));
        }
        syn::UseTree::Glob(_) => out.push((prefix, "*".into())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_leaves(t, prefix.clone(), out);
            }
        }
    }
}

/// Paths written in code that start at `crate`, `super` or `self`.
#[derive(Default)]
struct Refs {
    paths: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if segments.len() > 1 && path.leading_colon.is_none() {
            self.paths.push(segments);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !is_test(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }
}

/// `path` as written in `module` -> absolute segments from the crate root, or `None` for a path
/// into another crate.
fn absolute(module: &str, children: &BTreeSet<String>, path: &[String]) -> Option<Vec<String>> {
    let here: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_string).collect()
    };
    let first = path.first()?;
    match first.as_str() {
        "crate" => Some(path[1..].to_vec()),
        "self" => Some(here.into_iter().chain(path[1..].iter().cloned()).collect()),
        "super" => {
            let mut base = here;
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
            Some(base.into_iter().chain(rest.iter().cloned()).collect())
        }
        name if children.contains(name) => {
            Some(here.into_iter().chain(path.iter().cloned()).collect())
        }
        _ => None,
    }
}

/// The module that defines what `abs` names, following re-exports.
fn resolve(
    modules: &BTreeSet<String>,
    infos: &BTreeMap<String, ModuleInfo>,
    abs: &[String],
    depth: usize,
) -> Option<String> {
    if depth > 16 {
        return None;
    }
    // The longest prefix that is a module.
    let mut len = abs.len();
    loop {
        let candidate = abs[..len].join("::");
        if modules.contains(&candidate) {
            let rest = &abs[len..];
            if let Some(name) = rest.first()
                && let Some(target) = infos.get(&candidate).and_then(|i| i.reexports.get(name))
            {
                let mut next = target.clone();
                next.extend(rest[1..].iter().cloned());
                return resolve(modules, infos, &next, depth + 1).or(Some(candidate));
            }
            return Some(candidate);
        }
        if len == 0 {
            return None;
        }
        len -= 1;
    }
}

fn tarjan(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(deps) = s.graph.get(v) {
            for w in deps {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(lw));
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low[v];
                    s.low.insert(v, lv.min(iw));
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.out
}

/// The graph as lines `from -> to`, for a report.
pub fn describe(graph: &Graph) -> String {
    let mut out = String::new();
    for (from, deps) in graph {
        for to in deps {
            out.push_str(&format!("{} -> {}\n", show(from), show(to)));
        }
    }
    out
}

/// A module path as printed (`crate` for the root).
pub fn show(module: &str) -> &str {
    if module.is_empty() { "crate" } else { module }
}
