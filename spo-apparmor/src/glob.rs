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
    }
}
