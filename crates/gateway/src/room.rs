//! Room in a SKU's line: how many more units this gateway may send the
//! line before the units left are all spoken for by its own purchases the
//! line has not decided yet.
//!
//! In a drop of 200 sizes of 10 pairs, each size's crowd reaches the line a
//! purchase or two at a time, and the gateway learns a size is sold out
//! only after the line decided the purchase that sold it: until then every
//! later buyer of that size was sent too, and the line decided some 19
//! purchases per size where 10 sell it out (a message, an fsync, a pull and
//! a share of a commit each). With room known, a lane sends what the units
//! left can cover and holds the rest until the line's answers come back:
//! the units went (sold out: the gate answers the held ones), or some came
//! free (a buyer over the limit), and the held ones go.
//!
//! Must not decide: the room is a hint from the newest decision batch, and
//! the line still decides every purchase sent. Must not hold a purchase for
//! good: what keeps the room shut (decisions, at most once) can be lost, so
//! the lane sends what was held longer than `hold_max_ms` anyway (a batch's
//! decisions come back within tens of milliseconds in a burst: a hold that
//! long means an announcement was lost or the line is stuck, and the line
//! then answers the purchase itself).

use dropline_core::wire::LineAfter;
use std::sync::Mutex;
use tokio::sync::Notify;

/// One SKU's room, shared by its lane (which sends), the PubAcks (which
/// place what was sent) and the decision feed (which moves the line).
#[derive(Default)]
pub struct Room {
    state: Mutex<State>,
    /// Wakes the lane when the room may have grown; one waiter (the lane),
    /// so `notify_one` keeps a wake-up that comes before the lane waits.
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// The line as the newest decision batch left it; `None` before one,
    /// or after a restock made its `remaining` stale.
    line: Option<LineAfter>,
    /// `line` is the admission view's figure, not yet confirmed by a batch.
    seeded: bool,
    /// Messages this gateway sent that the line has not decided yet, as far
    /// as it knows.
    undecided: Vec<Sent>,
    next_id: u64,
}

struct Sent {
    id: u64,
    /// The place in line of its last purchase, once the PubAck told it.
    last_seq: Option<u64>,
    units: u64,
}

/// A message on its way, known to the room until the line decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentId(u64);

impl State {
    /// Drops what the line has decided. With no line known, every placed
    /// message goes too: nothing would ever prune it (a processor older
    /// than the announcement), and forgetting one only holds less.
    fn forget_decided(&mut self) {
        match self.line {
            Some(line) => self
                .undecided
                .retain(|sent| sent.last_seq.is_none_or(|seq| seq > line.applied_seq)),
            None => self.undecided.retain(|sent| sent.last_seq.is_none()),
        }
    }
}

impl Room {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change is a push, a retain or an assignment: a panic
        // while holding the lock leaves nothing half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Units the lane may send now; `None` while the line has not said
    /// where it stands (send everything, as without a room).
    pub fn free_units(&self) -> Option<u64> {
        let state = self.lock();
        let line = state.line?;
        let spoken_for: u64 = state.undecided.iter().map(|sent| sent.units).sum();
        Some(u64::from(line.remaining).saturating_sub(spoken_for))
    }

    /// A message of `units` is being sent.
    pub fn sending(&self, units: u64) -> SentId {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.undecided.push(Sent {
            id,
            last_seq: None,
            units,
        });
        SentId(id)
    }

    /// Its PubAck placed the message's last purchase at `last_seq`.
    pub fn placed(&self, id: SentId, last_seq: u64) {
        let mut state = self.lock();
        if let Some(sent) = state.undecided.iter_mut().find(|sent| sent.id == id.0) {
            sent.last_seq = Some(last_seq);
        }
        // Its decisions may have come before its PubAck was read.
        state.forget_decided();
        drop(state);
        self.changed.notify_one();
    }

    /// The message was not taken: nothing of it is in line.
    pub fn not_sent(&self, id: SentId) {
        self.lock().undecided.retain(|sent| sent.id != id.0);
        self.changed.notify_one();
    }

    /// Starts the room of a lane that has sent nothing yet from what the
    /// admission view said was left (read before the lane began, so none
    /// of its purchases are in that figure): the first batch replaces it.
    pub fn seed(&self, remaining: u32) {
        let mut state = self.lock();
        if state.line.is_none() {
            state.line = Some(LineAfter {
                applied_seq: 0,
                remaining,
            });
            state.seeded = true;
        }
    }

    /// A purchase was held as long as it may be. A room the line never
    /// confirmed is dropped (its processors may not announce where the
    /// line stands): from then on nothing is held until a batch says.
    pub fn hold_expired(&self) {
        let mut state = self.lock();
        if state.seeded {
            state.line = None;
            state.seeded = false;
            state.forget_decided();
        }
    }

    /// A decision batch left the line at `line`. An older one (announced
    /// again by a new owner, or overtaken) changes nothing.
    pub fn line_moved(&self, line: LineAfter) {
        let mut state = self.lock();
        if state
            .line
            .is_some_and(|known| known.applied_seq > line.applied_seq)
        {
            return;
        }
        state.line = Some(line);
        state.seeded = false;
        state.forget_decided();
        drop(state);
        self.changed.notify_one();
    }

    /// Units came back outside a batch's announcement (a restock): the room
    /// is unknown until the next batch.
    pub fn forget_line(&self) {
        let mut state = self.lock();
        state.line = None;
        state.seeded = false;
        state.forget_decided();
        drop(state);
        self.changed.notify_one();
    }

    /// Wakes the lane: something it waits for may have changed (a
    /// sell-out the gate now answers).
    pub fn nudge(&self) {
        self.changed.notify_one();
    }

    /// Resolves when the room may have changed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(applied_seq: u64, remaining: u32) -> LineAfter {
        LineAfter {
            applied_seq,
            remaining,
        }
    }

    #[test]
    fn without_word_from_the_line_nothing_is_held() {
        let room = Room::default();
        room.sending(5);
        assert_eq!(room.free_units(), None);
    }

    #[test]
    fn units_sent_and_undecided_are_spoken_for_until_the_line_passes_them() {
        let room = Room::default();
        room.line_moved(line(10, 4));
        let first = room.sending(3);
        assert_eq!(room.free_units(), Some(1), "sent, PubAck not read yet");
        room.placed(first, 20);
        let second = room.sending(2);
        assert_eq!(room.free_units(), Some(0), "more sent than is left");
        room.placed(second, 30);
        room.line_moved(line(20, 1));
        assert_eq!(room.free_units(), Some(0), "the second is still undecided");
        room.line_moved(line(30, 0));
        assert_eq!(room.free_units(), Some(0), "sold out");
        room.line_moved(line(40, 3));
        assert_eq!(room.free_units(), Some(3), "units came free");
    }

    #[test]
    fn a_message_decided_before_its_pub_ack_is_read_is_not_counted() {
        let room = Room::default();
        let sent = room.sending(2);
        room.line_moved(line(50, 5));
        assert_eq!(room.free_units(), Some(3));
        room.placed(sent, 50);
        assert_eq!(room.free_units(), Some(5));
    }

    #[test]
    fn a_seed_from_the_view_holds_until_the_first_batch_replaces_it() {
        let room = Room::default();
        room.seed(3);
        let sent = room.sending(3);
        assert_eq!(room.free_units(), Some(0));
        room.placed(sent, 7);
        room.line_moved(line(7, 0));
        assert_eq!(room.free_units(), Some(0), "sold out");
        room.seed(3);
        assert_eq!(room.free_units(), Some(0), "a batch outranks the view");
    }

    #[test]
    fn a_seed_no_batch_confirms_is_dropped_when_a_hold_expires() {
        let room = Room::default();
        room.seed(2);
        let sent = room.sending(2);
        room.placed(sent, 9);
        assert_eq!(room.free_units(), Some(0));
        room.hold_expired();
        assert_eq!(room.free_units(), None, "nothing held any more");
        room.line_moved(line(9, 1));
        room.hold_expired();
        assert_eq!(room.free_units(), Some(1), "a batch's word stays");
    }

    #[test]
    fn an_older_announcement_does_not_move_the_line_back() {
        let room = Room::default();
        room.line_moved(line(30, 0));
        room.line_moved(line(20, 6));
        assert_eq!(room.free_units(), Some(0));
    }

    #[test]
    fn a_message_not_taken_frees_its_units_and_a_restock_forgets_the_line() {
        let room = Room::default();
        room.line_moved(line(1, 2));
        let sent = room.sending(2);
        assert_eq!(room.free_units(), Some(0));
        room.not_sent(sent);
        assert_eq!(room.free_units(), Some(2));
        room.forget_line();
        assert_eq!(room.free_units(), None);
    }
}
