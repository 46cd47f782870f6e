//! Whether two AppArmor path globs can match one path: what a merge needs to know before it
//! keeps one profile's `deniedPaths` entry next to another profile's allowed paths (AppArmor's
//! deny always wins, so a deny that overlaps an allowed path takes that path away).
//!
//! Each glob (the grammar of [`crate::grammar`]) is read into sequences of atoms, one sequence
//! per way through its alternations, and two sequences overlap when the product of the two
//! automata reaches the end of both: a search over position pairs, each visited once.
//!
//! The answer errs toward "they may overlap": a variable (`@{HOME}`) stands for any path, and a
//! glob this reader cannot follow (outside the grammar, or more than [`MAX_EXPANSIONS`] ways
//! through its alternations) overlaps everything, as does a pair that would cost more than
//! [`MAX_WORK`] steps. For a merge that means dropping a deny rather
//! than taking away a path the other profile allows.

/// A set of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    const EMPTY: ByteSet = ByteSet([0; 4]);
    const ALL: ByteSet = ByteSet([u64::MAX; 4]);

    fn one(b: u8) -> ByteSet {
        let mut s = ByteSet::EMPTY;
        s.insert(b);
        s
    }

    /// Every byte but `/` (what `?` and `*` match).
    fn not_slash() -> ByteSet {
        let mut s = ByteSet::ALL;
        s.0[usize::from(b'/' >> 6)] &= !(1u64 << (b'/' & 63));
        s
    }

    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1u64 << (b & 63);
    }

    fn intersection(&self, other: &ByteSet) -> ByteSet {
        ByteSet(std::array::from_fn(|i| self.0[i] & other.0[i]))
    }

    fn intersects(&self, other: &ByteSet) -> bool {
        self.intersection(other) != ByteSet::EMPTY
    }

    fn complement(&self) -> ByteSet {
        ByteSet(self.0.map(|w| !w))
    }
}

/// One step of a glob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Atom {
    /// Exactly one byte of the set (a literal, `?`, a class).
    One(ByteSet),
    /// Any number of bytes of the set, none included (`*`: not `/`; `**` and variables: any).
    Many(ByteSet),
}

impl Atom {
    fn bytes(&self) -> &ByteSet {
        match self {
            Atom::One(s) | Atom::Many(s) => s,
        }
    }
}

/// Ways through a glob's alternations beyond which it is taken to overlap everything.
pub const MAX_EXPANSIONS: usize = 256;

/// Position pairs one comparison may visit, over all ways through both globs, beyond which the
/// globs are taken to overlap (two 4,096-byte paths with many alternatives would otherwise
/// cost billions of steps).
pub const MAX_WORK: usize = 1 << 22;

/// Whether some path matches both `a` and `b` (or may: see the module documentation).
pub fn may_overlap(a: &str, b: &str) -> bool {
    let (Some(xs), Some(ys)) = (read(a), read(b)) else {
        return true;
    };
    let work = xs
        .iter()
        .map(|x| ys.iter().map(|y| (x.len() + 1) * (y.len() + 1)).sum::<usize>())
        .sum::<usize>();
    if work > MAX_WORK {
        return true;
    }
    xs.iter().any(|x| ys.iter().any(|y| sequences_overlap(x, y)))
}

/// The atom sequences of `glob`, one per way through its alternations; `None` when it cannot be
/// followed.
fn read(glob: &str) -> Option<Vec<Vec<Atom>>> {
    let bytes = glob.as_bytes();
    let mut at = 0;
    let seqs = read_seq(bytes, &mut at, 0)?;
    (at == bytes.len()).then_some(seqs)
}

/// Reads from `*at` up to the end, or (inside an alternation, `depth > 0`) up to its `,` or `}`.
fn read_seq(p: &[u8], at: &mut usize, depth: usize) -> Option<Vec<Vec<Atom>>> {
    let mut seqs: Vec<Vec<Atom>> = vec![Vec::new()];
    let push = |seqs: &mut Vec<Vec<Atom>>, atom: Atom| seqs.iter_mut().for_each(|s| s.push(atom));
    while let Some(&c) = p.get(*at) {
        match c {
            b',' | b'}' if depth > 0 => break,
            b'{' => {
                if depth >= crate::grammar::MAX_ALTERNATION_DEPTH {
                    return None;
                }
                *at += 1;
                let mut options = Vec::new();
                loop {
                    options.extend(read_seq(p, at, depth + 1)?);
                    match p.get(*at) {
                        Some(b',') => *at += 1,
                        Some(b'}') => {
                            *at += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
                let mut next = Vec::new();
                for seq in &seqs {
                    for option in &options {
                        if next.len() == MAX_EXPANSIONS {
                            return None;
                        }
                        next.push(seq.iter().chain(option.iter()).copied().collect());
                    }
                }
                seqs = next;
            }
            b'*' => {
                if p.get(*at + 1) == Some(&b'*') {
                    *at += 2;
                    push(&mut seqs, Atom::Many(ByteSet::ALL));
                } else {
                    *at += 1;
                    push(&mut seqs, Atom::Many(ByteSet::not_slash()));
                }
            }
            b'?' => {
                *at += 1;
                push(&mut seqs, Atom::One(ByteSet::not_slash()));
            }
            b'[' => {
                *at += 1;
                push(&mut seqs, Atom::One(read_class(p, at)?));
            }
            b'@' if p.get(*at + 1) == Some(&b'{') => {
                // A variable: any path at all, as far as this reader knows.
                let end = p[*at..].iter().position(|&b| b == b'}')?;
                *at += end + 1;
                push(&mut seqs, Atom::Many(ByteSet::ALL));
            }
            b'}' | b']' | b',' => return None,
            _ => {
                *at += 1;
                push(&mut seqs, Atom::One(ByteSet::one(c)));
            }
        }
    }
    Some(seqs)
}

/// Reads a class after its `[` up to and including its `]`.
fn read_class(p: &[u8], at: &mut usize) -> Option<ByteSet> {
    let negated = p.get(*at) == Some(&b'^');
    if negated {
        *at += 1;
    }
    let mut set = ByteSet::EMPTY;
    let mut first = true;
    loop {
        let c = *p.get(*at)?;
        if c == b']' && !first {
            *at += 1;
            break;
        }
        first = false;
        if p.get(*at + 1) == Some(&b'-') && p.get(*at + 2).is_some_and(|&e| e != b']') {
            let end = p[*at + 2];
            for b in c..=end {
                set.insert(b);
            }
            *at += 3;
        } else {
            set.insert(c);
            *at += 1;
        }
    }
    // A class never matches `/` (AppArmor matches path components).
    let set = if negated { set.complement() } else { set };
    Some(set.intersection(&ByteSet::not_slash()))
}

/// Whether the languages of two atom sequences meet: a search over (position in `a`, position
/// in `b`) pairs, moving past a `Many` for free or over one byte both can take.
fn sequences_overlap(a: &[Atom], b: &[Atom]) -> bool {
    let width = b.len() + 1;
    let mut seen = vec![false; (a.len() + 1) * width];
    let mut todo = vec![(0usize, 0usize)];
    while let Some((i, j)) = todo.pop() {
        if std::mem::replace(&mut seen[i * width + j], true) {
            continue;
        }
        if i == a.len() && j == b.len() {
            return true;
        }
        let (x, y) = (a.get(i), b.get(j));
        if let Some(Atom::Many(_)) = x {
            todo.push((i + 1, j));
        }
        if let Some(Atom::Many(_)) = y {
            todo.push((i, j + 1));
        }
        if let (Some(x), Some(y)) = (x, y)
            && x.bytes().intersects(y.bytes())
        {
            let next_i = if matches!(x, Atom::Many(_)) { i } else { i + 1 };
            let next_j = if matches!(y, Atom::Many(_)) { j } else { j + 1 };
            if (next_i, next_j) != (i, j) {
                todo.push((next_i, next_j));
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn globs_that_share_a_path_overlap() {
        for (a, b) in [
            ("/etc/**", "/etc/hostname"),
            ("/etc/*/certs", "/etc/ssl/certs"),
            ("/home/*/x", "/home/**"),
            ("/var/log/{a,b}.log", "/var/log/b.log"),
            ("/tmp/[a-c]x", "/tmp/bx"),
            ("/srv/{data,{cache,tmp}}/*", "/srv/tmp/f"),
            ("/a*", "/*b"),
            ("@{HOME}/.bashrc", "/root/.bashrc"),
            ("/proc/@{pid}/status", "/proc/1/status"),
            ("/x/**/y", "/x/a/b/y"),
        ] {
            assert!(may_overlap(a, b), "{a} and {b}");
            assert!(may_overlap(b, a), "{b} and {a}");
        }
    }

    #[test]
    fn globs_without_a_common_path_do_not() {
        for (a, b) in [
            ("/etc/*", "/etc/ssl/certs"),
            ("/var/log/{a,b}.log", "/var/log/c.log"),
            ("/tmp/[^a-c]x", "/tmp/bx"),
            ("/a?c", "/a/c"),
            ("/a*", "/b*"),
            ("/etc/shadow", "/etc/h*"),
            ("/usr/lib/**.so", "/usr/lib/x.txt"),
        ] {
            assert!(!may_overlap(a, b), "{a} and {b}");
            assert!(!may_overlap(b, a), "{b} and {a}");
        }
    }

    #[test]
    fn what_cannot_be_followed_overlaps_everything() {
        // Unbalanced, and too many ways through the alternations.
        assert!(may_overlap("/a/{b", "/z"));
        let wide = "/{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}";
        assert!(may_overlap(wide, "/z"));
        // Within the bound the answer is exact.
        assert!(!may_overlap("/{a,b}{a,b}{a,b}", "/z"));
        // Two long globs with alternatives cost too much to follow.
        let long = format!("/{}{{a,b}}{{a,b}}{{a,b}}{{a,b}}", "x".repeat(4000));
        assert!(may_overlap(&long, &format!("/{}", "y".repeat(4000))));
    }

    proptest! {
        #[test]
        fn literal_paths_overlap_exactly_when_equal(a in "/[a-c/]{0,6}", b in "/[a-c/]{0,6}") {
            prop_assert_eq!(may_overlap(&a, &b), a == b);
        }

        #[test]
        fn a_star_matches_a_component_and_double_star_anything(dir in "[a-c]{1,4}", name in "[a-c]{0,4}", sub in "[a-c]{1,3}") {
            let (one, any) = (format!("/{dir}/*"), format!("/{dir}/**"));
            let path = format!("/{dir}/{name}");
            prop_assert!(may_overlap(&one, &path), "{} and {}", one, path);
            let deeper = format!("/{dir}/{sub}/{name}");
            prop_assert!(!may_overlap(&one, &deeper), "{} and {}", one, deeper);
            prop_assert!(may_overlap(&any, &deeper), "{} and {}", any, deeper);
        }

        /// Against the brute-force oracle below, over the whole grammar the merge meets
        /// (literals, `?`, `*`, `**`, classes and negated classes, nested alternations with
        /// empty options): whenever some path matches both, `may_overlap` says so; and when
        /// every witness would be short enough to be among the enumerated paths, it says so
        /// only then.
        #[test]
        fn overlap_agrees_with_enumerating_paths(a in oracle::glob(), b in oracle::glob()) {
            let witness = oracle::PATHS.iter().find(|p| oracle::matches(a.as_bytes(), p) && oracle::matches(b.as_bytes(), p));
            let got = may_overlap(&a, &b);
            if let Some(w) = witness {
                prop_assert!(got, "{} and {} both match {:?}", a, b, String::from_utf8_lossy(w));
            } else if oracle::witness_bound(&a) + oracle::witness_bound(&b) <= oracle::MAX_LEN {
                prop_assert!(!got, "{} and {} share no path of up to {} bytes, yet overlap", a, b, oracle::MAX_LEN);
            }
        }
    }

    /// The exact half of the property above is reached in quantity.
    #[test]
    fn the_oracle_decides_most_pairs_exactly() {
        use proptest::test_runner::{Config, TestRunner};
        let cases = 400;
        let mut runner = TestRunner::new(Config {
            cases,
            ..Config::default()
        });
        let (mut overlapping, mut disjoint) = (0u32, 0u32);
        let strategy = (oracle::glob(), oracle::glob());
        for _ in 0..cases {
            let (a, b) = proptest::strategy::ValueTree::current(&strategy.new_tree(&mut runner).expect("globs"));
            let both = oracle::PATHS
                .iter()
                .any(|p| oracle::matches(a.as_bytes(), p) && oracle::matches(b.as_bytes(), p));
            let exact = oracle::witness_bound(&a) + oracle::witness_bound(&b) <= oracle::MAX_LEN;
            match (both, exact) {
                (true, _) => overlapping += 1,
                (false, true) => disjoint += 1,
                (false, false) => {}
            }
        }
        eprintln!("oracle: {overlapping} overlapping, {disjoint} exactly disjoint of {cases}");
        // Both answers are reached often: the generator is neither all-overlap nor all-disjoint.
        assert!(
            overlapping * 5 >= cases && disjoint * 5 >= cases,
            "overlapping {overlapping}, exactly disjoint {disjoint} of {cases}"
        );
    }

    /// An oracle written from the grammar alone, sharing nothing with the code under test:
    /// match a glob against a path by backtracking over its text, and enumerate every path over
    /// a small alphabet. `z` stands for every byte no generated glob names.
    mod oracle {
        use std::sync::LazyLock;

        use proptest::prelude::*;

        /// Longest enumerated path, leading `/` included.
        pub const MAX_LEN: usize = 7;

        /// Every path of `/` followed by up to `MAX_LEN - 1` bytes of `/ab z`.
        pub static PATHS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
            let mut out = vec![b"/".to_vec()];
            let mut level = vec![b"/".to_vec()];
            for _ in 1..MAX_LEN {
                level = level
                    .iter()
                    .flat_map(|p| {
                        b"/abz".iter().map(move |c| {
                            let mut q = p.clone();
                            q.push(*c);
                            q
                        })
                    })
                    .collect();
                out.extend(level.iter().cloned());
            }
            out
        });

        /// Globs of the grammar over `a`, `b` and `/`: one to three pieces after the root.
        pub fn glob() -> impl Strategy<Value = String> {
            let piece = prop::sample::select(vec![
                "a",
                "b",
                "/",
                "*",
                "**",
                "?",
                "[ab]",
                "[^a]",
                "[a-b]",
                "{a,b}",
                "{a,b/}",
                "{,a}",
                "{a*,/b}",
                "{a,{b,/}}",
                "{**,b}",
            ]);
            proptest::collection::vec(piece, 1..4).prop_map(|v| format!("/{}", v.concat()))
        }

        /// The top-level options of the alternation whose `{` is at 0, and what follows its `}`.
        fn alternation(glob: &[u8]) -> (Vec<&[u8]>, &[u8]) {
            let (mut depth, mut start, mut options) = (0, 1, Vec::new());
            for (i, &c) in glob.iter().enumerate() {
                match c {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            options.push(&glob[start..i]);
                            return (options, &glob[i + 1..]);
                        }
                    }
                    b',' if depth == 1 => {
                        options.push(&glob[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            panic!("unbalanced glob {}", String::from_utf8_lossy(glob));
        }

        /// Whether `path` matches `glob`: `*` any bytes but `/` (none included), `**` any
        /// bytes, `?` one byte but `/`, a class one byte of it (never `/`), `{x,y}` either.
        pub fn matches(glob: &[u8], path: &[u8]) -> bool {
            match glob.first() {
                None => path.is_empty(),
                Some(b'*') => {
                    let any = glob.get(1) == Some(&b'*');
                    let rest = if any { &glob[2..] } else { &glob[1..] };
                    for k in 0..=path.len() {
                        if matches(rest, &path[k..]) {
                            return true;
                        }
                        if k < path.len() && !any && path[k] == b'/' {
                            return false;
                        }
                    }
                    false
                }
                Some(b'?') => path.first().is_some_and(|&c| c != b'/') && matches(&glob[1..], &path[1..]),
                Some(b'[') => {
                    let end = glob.iter().position(|&c| c == b']').expect("closed class");
                    let body = &glob[1..end];
                    let (negated, body) = match body.split_first() {
                        Some((b'^', rest)) => (true, rest),
                        _ => (false, body),
                    };
                    let Some(&c) = path.first() else { return false };
                    let listed = if body.len() == 3 && body[1] == b'-' {
                        (body[0]..=body[2]).contains(&c)
                    } else {
                        body.contains(&c)
                    };
                    c != b'/' && listed != negated && matches(&glob[end + 1..], &path[1..])
                }
                Some(b'{') => {
                    // An option matches a prefix and the rest the remainder: joining the texts
                    // instead would fuse `{a*,b}*` into `a**`, which crosses `/`.
                    let (options, rest) = alternation(glob);
                    options
                        .iter()
                        .any(|o| (0..=path.len()).any(|k| matches(o, &path[..k]) && matches(rest, &path[k..])))
                }
                Some(&c) => path.first() == Some(&c) && matches(&glob[1..], &path[1..]),
            }
        }

        /// The most bytes one way through `glob` must take (stars count none): two globs that
        /// share a path share one no longer than the sum of their bounds.
        pub fn witness_bound(glob: &str) -> usize {
            fn bound(glob: &[u8]) -> usize {
                match glob.first() {
                    None => 0,
                    Some(b'*') => bound(if glob.get(1) == Some(&b'*') {
                        &glob[2..]
                    } else {
                        &glob[1..]
                    }),
                    Some(b'[') => {
                        let end = glob.iter().position(|&c| c == b']').expect("closed class");
                        1 + bound(&glob[end + 1..])
                    }
                    Some(b'{') => {
                        let (options, rest) = alternation(glob);
                        options.iter().map(|o| bound(&[o, rest].concat())).max().unwrap_or(0)
                    }
                    Some(_) => 1 + bound(&glob[1..]),
                }
            }
            bound(glob.as_bytes())
        }
    }
}
