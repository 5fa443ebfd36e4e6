//! Every problem of a file reported, with its position and key path.

use super::*;
use crate::config::node::parse_toml;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Item {
    name: Spanned<String>,
    size: u32,
    #[serde(default)]
    kind: Option<Kind>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Small,
    Large,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Root {
    #[serde(default)]
    items: Items<Item>,
}

#[test]
fn reports_every_problem_and_keeps_good_entries() {
    let text = "[[items]]\nname = \"a\"\nsize = 1\nsise = 2\n\n[[items]]\nname = \"b\"\n\n[[items]]\nname = \"c\"\nsize = \"x\"\n\n[[items]]\nname = \"d\"\nsize = 4\nkind = \"lrge\"\n\n[[items]]\nname = \"e\"\nsize = 5\n";
    let node = parse_toml(text).unwrap();
    let ctx = Ctx::new(FileId(0));
    let root: Root = from_node(&node, &ctx).unwrap();
    let names: Vec<&str> = root
        .items
        .0
        .iter()
        .map(|i| i.value.name.value.as_str())
        .collect();
    assert_eq!(names, ["a", "e"]);
    assert_eq!(root.items.0[1].loc.path, "items[4]");
    assert_eq!(root.items.0[0].value.name.loc.pos.line, 2);
    let problems = ctx.problems.borrow();
    let msgs: Vec<String> = problems
        .iter()
        .map(|p| {
            format!(
                "{}:{} {} {}",
                p.pos.line,
                p.path,
                p.message,
                p.help.clone().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(problems.len(), 4, "{msgs:#?}");
    assert!(
        msgs[0].starts_with("4:items[0].sise unknown key `sise` did you mean `size`?"),
        "{msgs:#?}"
    );
    assert!(
        msgs[1].contains("items[1].size missing required key `size`"),
        "{msgs:#?}"
    );
    assert!(
        msgs[2].starts_with("11:items[2].size expected a whole number, found a string"),
        "{msgs:#?}"
    );
    assert!(
        msgs[3].starts_with("16:items[3].kind unknown value `lrge` did you mean `large`?"),
        "{msgs:#?}"
    );
    let broken = ctx.broken.borrow();
    assert_eq!(
        broken
            .iter()
            .map(|(l, n)| format!("{l}/{n}"))
            .collect::<Vec<_>>(),
        ["items/b", "items/c", "items/d"]
    );
}
