//! Checks on the task graph: unique ids, dependencies on tasks that exist,
//! and no cycles.

use std::collections::{HashMap, HashSet, VecDeque};

use super::node::{Diag, Pos, closest};

/// What the graph checks need to know about one task.
pub(super) struct TaskNode {
    /// `None` when the id was missing or invalid; such a task is still
    /// checked for unknown dependencies.
    pub id: Option<String>,
    /// Where the id is, or where the task starts when it has none.
    pub pos: Pos,
    /// Upstream task ids with their positions.
    pub depends_on: Vec<(String, Pos)>,
}

/// Reports duplicate ids, bad dependencies and cycles.
pub(super) fn check(d: &mut Diag, tasks: &[TaskNode]) {
    // The first task with an id owns it; later ones are reported.
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, task) in tasks.iter().enumerate() {
        let Some(id) = task.id.as_deref() else {
            continue;
        };
        if let Some(&first) = index.get(id) {
            d.error(
                task.pos,
                format!(
                    "duplicate task id `{id}`, first declared on line {}",
                    tasks[first].pos.line
                ),
            );
        } else {
            index.insert(id, i);
        }
    }

    // Edges run from upstream to downstream.
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, task) in tasks.iter().enumerate() {
        let owner = task
            .id
            .as_deref()
            .is_some_and(|id| index.get(id) == Some(&i));
        let name = task
            .id
            .as_deref()
            .map_or_else(|| "this task".to_owned(), |id| format!("`{id}`"));
        let mut seen = HashSet::new();
        for (dep, pos) in &task.depends_on {
            if task.id.as_deref() == Some(dep.as_str()) {
                d.error(*pos, format!("task {name} depends on itself"));
            } else if !seen.insert(dep.as_str()) {
                d.error(
                    *pos,
                    format!("task `{dep}` is listed twice in `depends_on` of {name}"),
                );
            } else if let Some(&up) = index.get(dep.as_str()) {
                if owner {
                    downstream[up].push(i);
                }
            } else {
                let hint =
                    closest(dep, index.keys().copied()).map(|c| format!("did you mean `{c}`?"));
                d.error_hint(
                    *pos,
                    format!("task {name} depends on unknown task `{dep}`"),
                    hint,
                );
            }
        }
    }

    for mut component in strongly_connected(&downstream) {
        if component.len() < 2 {
            continue;
        }
        component.sort_unstable();
        let start = component[0];
        let path = cycle_through(start, &component, &downstream);
        let names: Vec<&str> = path
            .iter()
            .map(|&i| tasks[i].id.as_deref().unwrap_or("?"))
            .collect();
        d.error_hint(
            tasks[start].pos,
            format!("dependency cycle: {}", names.join(" -> ")),
            Some("`a -> b` means `b` depends on `a`; remove one of these dependencies".to_owned()),
        );
    }
}

/// Tarjan's strongly connected components, without recursion so that a long
/// chain of tasks cannot overflow the stack.
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let mut order = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut components = Vec::new();

    for root in 0..n {
        if order[root] != UNSEEN {
            continue;
        }
        order[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        let mut calls = vec![(root, 0usize)];

        while let Some(frame) = calls.last_mut() {
            let v = frame.0;
            if let Some(&w) = edges[v].get(frame.1) {
                frame.1 += 1;
                if order[w] == UNSEEN {
                    order[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(order[w]);
                }
                continue;
            }

            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == order[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// The shortest cycle from `start` back to itself within `component` (sorted),
/// as a path that begins and ends with `start`.
fn cycle_through(start: usize, component: &[usize], edges: &[Vec<usize>]) -> Vec<usize> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &edges[v] {
            if w == start {
                let mut path = vec![start, v];
                let mut at = v;
                while let Some(&p) = parent.get(&at) {
                    path.push(p);
                    at = p;
                }
                // The walk up the BFS tree ends at `start`, its root.
                path.reverse();
                return path;
            }
            if component.binary_search(&w).is_ok() && w != start && !parent.contains_key(&w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    vec![start, start]
}
