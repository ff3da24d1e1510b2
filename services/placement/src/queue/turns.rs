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
pub(super) struct Turns {
    /// The classes left in this turn, in order.
    this_turn: VecDeque<String>,
    /// The classes that progressed in this turn: the next turn's.
    next_turn: Vec<String>,
}

impl Turns {
    pub(super) fn new(classes: Vec<String>) -> Self {
        Self { this_turn: VecDeque::new(), next_turn: classes }
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
            let mut turns = Turns::new(lines.keys().cloned().collect());
            while let Some(id) = turns.next(|id| lines.get(id).and_then(|line| line.front().copied())) {
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
}
