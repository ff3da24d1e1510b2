//! Fair turns with aging: the order in which one round of the queue worker serves the classes worth
//! trying, so a class with many entries cannot take all the capacity that frees up.

use std::collections::VecDeque;

/// What serving the next entry of a class did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The entry left the queue (placed, or its session gone): the class may go on.
    Progressed,
    /// The class stops for this round: its head is blocked, or another replica holds it.
    Stopped,
    /// The class placed every entry it knew (more may wait behind them): it stops for this round.
    Exhausted,
}

/// Fair turns over the classes worth trying in a round: every turn serves one entry of each class
/// still going, the class whose head waited longest first (aging: the order is taken again at every
/// turn, by the heads' sequences, which grow with time), until every class stopped.
///
/// A class can join a round under way ([`Turns::join`]): the fleet view syncs on its own, so room can
/// appear while classes are being served. The joining class takes its place in the turn in progress,
/// so the classes already going get no more than one entry of that room before it.
#[derive(Default)]
pub(super) struct Turns {
    /// The classes left in this turn, oldest head first.
    this_turn: VecDeque<String>,
    /// The classes that progressed in this turn: the next turn's.
    next_turn: Vec<String>,
}

impl Turns {
    /// Adds classes worth trying to the turn in progress, in the order of their heads' sequences
    /// (`head_sequence`; a class without a head last); a class already in this turn or the next is
    /// not added again.
    pub(super) fn join(&mut self, classes: Vec<String>, head_sequence: impl Fn(&str) -> Option<u64>) {
        let new: Vec<String> = classes
            .into_iter()
            .filter(|class| !self.this_turn.contains(class) && !self.next_turn.contains(class))
            .collect();
        if new.is_empty() {
            return;
        }
        // The classes left in the turn keep their order: none was served since it was taken (stable sort).
        self.this_turn.extend(new);
        self.this_turn.make_contiguous().sort_by_key(|id| head_sequence(id).unwrap_or(u64::MAX));
    }

    /// The class to serve one entry of next; `head_sequence` orders a new turn (a class without a
    /// head last). `None` once every class stopped.
    pub(super) fn next(&mut self, head_sequence: impl Fn(&str) -> Option<u64>) -> Option<String> {
        if self.this_turn.is_empty() {
            let mut going = std::mem::take(&mut self.next_turn);
            going.sort_by_key(|id| head_sequence(id).unwrap_or(u64::MAX));
            self.this_turn = going.into();
        }
        self.this_turn.pop_front()
    }

    /// What serving the class `next` gave did: a class that progressed gets the next turn too.
    pub(super) fn served(&mut self, class: String, step: Step) {
        if step == Step::Progressed {
            self.next_turn.push(class);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};

    use super::{Step, Turns};

    /// Runs rounds as the worker does over classes of queued sequences, with `slots` free host slots
    /// per round shared by every class; the sequences placed, in order.
    fn place(classes: &[(&str, &[u64])], slots_per_round: &[usize]) -> Vec<u64> {
        let mut lines: HashMap<String, VecDeque<u64>> =
            classes.iter().map(|(id, sequences)| ((*id).to_owned(), sequences.iter().copied().collect())).collect();
        let mut placed = Vec::new();
        for &slots in slots_per_round {
            let mut free = slots;
            let mut turns = Turns::default();
            let head =
                |lines: &HashMap<String, VecDeque<u64>>, id: &str| lines.get(id).and_then(|l| l.front().copied());
            turns.join(lines.keys().cloned().collect(), |id| head(&lines, id));
            while let Some(id) = turns.next(|id| head(&lines, id)) {
                let line = lines.get_mut(&id).unwrap();
                let step = match line.front() {
                    None => Step::Exhausted,
                    Some(_) if free == 0 => Step::Stopped,
                    Some(_) => {
                        free -= 1;
                        placed.extend(line.pop_front());
                        if line.is_empty() { Step::Exhausted } else { Step::Progressed }
                    }
                };
                turns.served(id, step);
            }
        }
        placed
    }

    #[test]
    fn a_long_class_does_not_take_all_the_capacity_of_a_turn() {
        // The long class has the oldest head; three slots free up at once.
        let placed = place(&[("long", &[1, 3, 4, 5, 6, 7]), ("short", &[2])], &[3]);
        assert_eq!(placed, [1, 2, 3], "one entry per class per turn, the older head first: {placed:?}");
    }

    #[test]
    fn a_short_class_gets_the_first_slot_once_its_head_is_the_oldest() {
        // One slot at a time: the long class's head goes first while it is older, then the short one's.
        let placed = place(&[("long", &[1, 3, 4, 5]), ("short", &[2])], &[1, 1, 1, 1, 1]);
        assert_eq!(placed, [1, 2, 3, 4, 5], "served by age across classes, never starved: {placed:?}");
    }

    #[test]
    fn every_class_goes_on_until_it_stops() {
        let placed = place(&[("a", &[1, 2]), ("b", &[3]), ("c", &[])], &[10]);
        assert_eq!(placed, [1, 3, 2], "turns continue for the classes that progressed");
    }

    #[test]
    fn a_class_that_joins_during_a_round_gets_a_slot_of_the_turn_in_progress() {
        // The long class alone is going when room for two appears and the short class becomes worth
        // trying: it joins the turn in progress instead of waiting behind the long class's next entry.
        let heads: HashMap<&str, u64> = HashMap::from([("long", 1), ("short", 3)]);
        let sequence = |id: &str| heads.get(id).copied();
        let mut turns = Turns::default();
        turns.join(vec!["long".into()], sequence);
        assert_eq!(turns.next(sequence).as_deref(), Some("long"));
        turns.served("long".into(), Step::Progressed);
        turns.join(vec!["short".into(), "long".into()], sequence);
        assert_eq!(turns.next(sequence).as_deref(), Some("short"), "joined the turn in progress");
        turns.served("short".into(), Step::Exhausted);
        assert_eq!(turns.next(sequence).as_deref(), Some("long"), "the next turn; long was not added twice");
        turns.served("long".into(), Step::Stopped);
        assert_eq!(turns.next(sequence), None);
    }

    #[test]
    fn joining_classes_take_their_place_by_age() {
        let heads: HashMap<&str, u64> = HashMap::from([("a", 1), ("b", 5), ("c", 3)]);
        let sequence = |id: &str| heads.get(id).copied();
        let mut turns = Turns::default();
        turns.join(vec!["b".into(), "a".into()], sequence);
        turns.join(vec!["c".into()], sequence);
        let order: Vec<String> = std::iter::from_fn(|| turns.next(sequence)).collect();
        assert_eq!(order, ["a", "c", "b"]);
    }
}
