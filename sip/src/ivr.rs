//! The voice menu of a call, as a pure state machine: digits, finished prompts, the API's
//! answers and the clock go in; prompts to play, checks to make and the hang-up come out.
//! It never reads the clock (`now` is an input) and does no IO, so every path is a unit test.
//!
//! The flow: **Welcome** → meeting ID + `#` → the API is asked as for a guest without a
//! password. Admitted → **Correct ID** (+ how many are there). Refused → **Enter password**
//! → password + `#` → asked again with it. The API never says whether the ID or the password
//! was wrong (so IDs cannot be probed), so neither does the menu: a wrong ID is also asked for
//! a password, then answered **Incorrect ID**. Three failed tries → **Try again** + **Bye**,
//! hang up. A dialled `sip:<id>@…` or `sip:<id>*<password>@…` skips the questions it answers.

use std::time::{Duration, Instant};

use crate::prompt::Prompt;

/// Failed tries (wrong credentials or silence) before the caller is sent away.
pub const TRIES: u32 = 3;
/// Digits beyond which an entry cannot be a meeting ID or password.
const MAX_DIGITS: usize = 32;
/// Times a check is repeated while the conference is being placed.
const MAX_RETRIES: u32 = 10;
/// A caller whose meeting opens within this long waits on the line (in silence, after
/// "not active") and is let in when it opens; a later meeting sends them away.
pub const MAX_WAIT_FOR_OPENING: Duration = Duration::from_secs(10 * 60);
/// After the opening time, the check is made this much later (clocks differ a little).
const OPENING_MARGIN: Duration = Duration::from_millis(500);

/// What happens to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Every queued prompt has been played (or stopped).
    PromptsDone,
    /// A keypad digit (`0`-`9`, `*`, `#`).
    Digit(char),
    /// The API answered the last [`Action::Check`].
    Answer(Answer),
}

/// The API's answer to a join check, as the menu needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Admitted. `others`: participants already there, when the answer says.
    Admitted {
        /// Participants already in the meeting, when known.
        others: Option<u32>,
    },
    /// Meeting ID or password wrong (the API does not say which).
    WrongCredentials,
    /// Not started yet, or ended.
    NotActive,
    /// No room left.
    Full,
    /// Being placed: ask again after this long.
    RetryAfter(Duration),
    /// Not open yet; it opens in this long.
    OpensIn(Duration),
    /// Too many failed tries from here or for this meeting.
    TooManyAttempts,
    /// Anything else.
    Error,
}

/// What the call must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue a prompt after those already queued.
    Play(Prompt),
    /// Stop the prompt playing and drop the queue (the caller started typing).
    StopPrompts,
    /// Ask the API whether these credentials admit the caller.
    Check {
        /// The meeting ID typed or dialled.
        meeting_id: String,
        /// The password, when one was given.
        password: Option<String>,
    },
    /// Hang up once the queued prompts have played.
    HangUp,
    /// The menu is over with this outcome (for metrics and logs).
    Finished(Outcome),
}

/// How a call's menu ended (the `outcome` label of the calls metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted to the meeting.
    Joined,
    /// Three wrong meeting IDs or passwords (or no answer).
    WrongId,
    /// The meeting is full.
    Full,
    /// The meeting is not open.
    NotActive,
    /// Too many failed tries: the API slows this caller or meeting down.
    TooManyAttempts,
    /// Something failed on our side.
    Error,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Joined => "joined",
            Outcome::WrongId => "wrongId",
            Outcome::Full => "full",
            Outcome::NotActive => "notActive",
            Outcome::TooManyAttempts => "tooManyAttempts",
            Outcome::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    EnteringId {
        digits: String,
    },
    EnteringPassword {
        meeting_id: String,
        digits: String,
    },
    Checking {
        meeting_id: String,
        password: Option<String>,
        retries: u32,
    },
    InMeeting,
    Over,
}

/// One call's menu.
#[derive(Debug)]
pub struct Ivr {
    state: State,
    tries: u32,
    playing: bool,
    /// The caller was told the meeting is not open yet and waits.
    waiting_for_opening: bool,
    digit_timeout: Duration,
    /// When the caller has been silent too long, or when to check again.
    deadline: Option<Instant>,
}

impl Ivr {
    /// Starts the menu of a call to `dialled` (the request URI's user part: `conference`,
    /// `<id>` or `<id>*<password>`).
    pub fn start(dialled: &str, digit_timeout: Duration, now: Instant) -> (Ivr, Vec<Action>) {
        let mut ivr = Ivr {
            state: State::EnteringId {
                digits: String::new(),
            },
            tries: 0,
            playing: false,
            waiting_for_opening: false,
            digit_timeout,
            deadline: None,
        };
        let (id, password) = match dialled.split_once('*') {
            Some((id, password)) => (id, Some(password)),
            None => (dialled, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let actions = if digits(id) && password.is_none_or(digits) {
            match password {
                Some(password) if proto::MeetingId::is_well_formed(id) => {
                    ivr.check(id.to_owned(), Some(password.to_owned()))
                }
                Some(_) => ivr.failed_try(Some(Prompt::IncorrectId)),
                None => ivr.submit_id(id.to_owned()),
            }
        } else {
            ivr.play(vec![Prompt::Welcome])
        };
        ivr.rearm(now);
        (ivr, actions)
    }

    /// When [`Ivr::on_deadline`] is due, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the caller has been admitted (the call stays up, the menu is done).
    pub fn in_meeting(&self) -> bool {
        self.state == State::InMeeting
    }

    /// Feeds one event.
    pub fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let actions = match event {
            Event::PromptsDone => {
                self.playing = false;
                Vec::new()
            }
            Event::Digit(digit) => self.on_digit(digit),
            Event::Answer(answer) => self.on_answer(answer, now),
        };
        self.rearm(now);
        actions
    }

    /// The deadline passed: the caller said nothing, or a check is due again.
    pub fn on_deadline(&mut self, now: Instant) -> Vec<Action> {
        if self.deadline.is_none_or(|at| now < at) {
            return Vec::new();
        }
        self.deadline = None;
        let actions = match std::mem::replace(&mut self.state, State::Over) {
            State::Checking {
                meeting_id,
                password,
                retries,
            } => {
                let actions = self.check(meeting_id, password);
                if let State::Checking { retries: r, .. } = &mut self.state {
                    *r = retries + 1;
                }
                actions
            }
            State::EnteringId { digits } if !digits.is_empty() => self.submit_id(digits),
            State::EnteringPassword { meeting_id, digits } if !digits.is_empty() => {
                self.check(meeting_id, Some(digits))
            }
            State::EnteringId { .. } => {
                self.state = State::EnteringId {
                    digits: String::new(),
                };
                self.failed_try(None)
            }
            State::EnteringPassword { meeting_id, .. } => {
                self.tries += 1;
                if self.tries >= TRIES {
                    self.give_up(Outcome::WrongId, &[Prompt::TryAgain, Prompt::Bye])
                } else {
                    self.state = State::EnteringPassword {
                        meeting_id,
                        digits: String::new(),
                    };
                    self.play(vec![Prompt::EnterPassword])
                }
            }
            other => {
                self.state = other;
                Vec::new()
            }
        };
        self.rearm(now);
        actions
    }

    fn on_digit(&mut self, digit: char) -> Vec<Action> {
        let mut actions = Vec::new();
        let typing = matches!(
            self.state,
            State::EnteringId { .. } | State::EnteringPassword { .. }
        );
        if !typing {
            return actions;
        }
        if self.playing {
            self.playing = false;
            actions.push(Action::StopPrompts);
        }
        let state = std::mem::replace(&mut self.state, State::Over);
        match (state, digit) {
            (State::EnteringId { digits }, '#') => actions.extend(self.submit_id(digits)),
            (State::EnteringPassword { meeting_id, digits }, '#') => {
                actions.extend(self.check(meeting_id, Some(digits)));
            }
            // `*` starts the entry over.
            (State::EnteringId { .. }, '*') => {
                self.state = State::EnteringId {
                    digits: String::new(),
                };
            }
            (State::EnteringPassword { meeting_id, .. }, '*') => {
                self.state = State::EnteringPassword {
                    meeting_id,
                    digits: String::new(),
                };
            }
            (State::EnteringId { mut digits }, d) => {
                if digits.len() < MAX_DIGITS {
                    digits.push(d);
                }
                self.state = State::EnteringId { digits };
            }
            (
                State::EnteringPassword {
                    meeting_id,
                    mut digits,
                },
                d,
            ) => {
                if digits.len() < MAX_DIGITS {
                    digits.push(d);
                }
                self.state = State::EnteringPassword { meeting_id, digits };
            }
            (other, _) => self.state = other,
        }
        actions
    }

    fn submit_id(&mut self, digits: String) -> Vec<Action> {
        // The API's rule for meeting IDs; anything else cannot be one, and needs no request.
        if proto::MeetingId::is_well_formed(&digits) {
            self.check(digits, None)
        } else {
            self.failed_try(Some(Prompt::IncorrectId))
        }
    }

    fn on_answer(&mut self, answer: Answer, now: Instant) -> Vec<Action> {
        let State::Checking {
            meeting_id,
            password,
            retries,
        } = std::mem::replace(&mut self.state, State::Over)
        else {
            return Vec::new();
        };
        match answer {
            Answer::Admitted { others } => {
                self.state = State::InMeeting;
                let mut prompts = vec![Prompt::CorrectId];
                prompts.extend(others.map(Prompt::participants));
                let mut actions = self.play(prompts);
                actions.push(Action::Finished(Outcome::Joined));
                actions
            }
            // Without a password, a refusal may only mean that the meeting needs one.
            Answer::WrongCredentials if password.is_none() => {
                self.state = State::EnteringPassword {
                    meeting_id,
                    digits: String::new(),
                };
                self.play(vec![Prompt::EnterPassword])
            }
            Answer::WrongCredentials => self.failed_try(Some(Prompt::IncorrectId)),
            Answer::OpensIn(wait) if wait <= MAX_WAIT_FOR_OPENING => {
                self.state = State::Checking {
                    meeting_id,
                    password,
                    retries,
                };
                self.deadline = Some(now + wait + OPENING_MARGIN);
                if std::mem::replace(&mut self.waiting_for_opening, true) {
                    Vec::new()
                } else {
                    self.play(vec![Prompt::NotActive])
                }
            }
            Answer::NotActive | Answer::OpensIn(_) => self.give_up(
                Outcome::NotActive,
                &[Prompt::NotActive, Prompt::TryAgain, Prompt::Bye],
            ),
            Answer::Full => self.give_up(Outcome::Full, &[Prompt::ConferenceFull, Prompt::Bye]),
            Answer::TooManyAttempts => {
                self.give_up(Outcome::TooManyAttempts, &[Prompt::TryAgain, Prompt::Bye])
            }
            Answer::RetryAfter(wait) if retries < MAX_RETRIES => {
                self.state = State::Checking {
                    meeting_id,
                    password,
                    retries,
                };
                self.deadline = Some(now + wait);
                Vec::new()
            }
            Answer::RetryAfter(_) | Answer::Error => self.give_up(
                Outcome::Error,
                &[Prompt::Error, Prompt::TryAgain, Prompt::Bye],
            ),
        }
    }

    /// A wrong entry or silence: tell the caller (`prompt`), ask again, or send them away.
    fn failed_try(&mut self, prompt: Option<Prompt>) -> Vec<Action> {
        self.tries += 1;
        let mut prompts: Vec<Prompt> = prompt.into_iter().collect();
        if self.tries >= TRIES {
            prompts.extend([Prompt::TryAgain, Prompt::Bye]);
            return self.give_up(Outcome::WrongId, &prompts);
        }
        prompts.push(Prompt::EnterId);
        self.state = State::EnteringId {
            digits: String::new(),
        };
        self.play(prompts)
    }

    fn give_up(&mut self, outcome: Outcome, prompts: &[Prompt]) -> Vec<Action> {
        self.state = State::Over;
        let mut actions = self.play(prompts.to_vec());
        actions.extend([Action::HangUp, Action::Finished(outcome)]);
        actions
    }

    fn check(&mut self, meeting_id: String, password: Option<String>) -> Vec<Action> {
        self.deadline = None;
        self.state = State::Checking {
            meeting_id: meeting_id.clone(),
            password: password.clone(),
            retries: 0,
        };
        vec![Action::Check {
            meeting_id,
            password,
        }]
    }

    fn play(&mut self, prompts: Vec<Prompt>) -> Vec<Action> {
        self.playing |= !prompts.is_empty();
        prompts.into_iter().map(Action::Play).collect()
    }

    /// The silence deadline runs while waiting for digits with nothing playing; a check's
    /// retry deadline is set where the answer is handled.
    fn rearm(&mut self, now: Instant) {
        match self.state {
            State::EnteringId { .. } | State::EnteringPassword { .. } => {
                self.deadline = (!self.playing).then(|| now + self.digit_timeout);
            }
            State::Checking { .. } => {}
            State::InMeeting | State::Over => self.deadline = None,
        }
    }
}

/// What a caller asks for with the keypad once in the meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeetingCommand {
    /// `*6`: mute or unmute oneself.
    ToggleMute,
}

/// The keypad in the meeting: `*` starts a command, the next digit names it (`*6`: mute or
/// unmute). Other digits are ignored, so stray tones do nothing.
#[derive(Debug, Default)]
pub struct MeetingKeys {
    star: bool,
}

impl MeetingKeys {
    /// Feeds one digit; returns the command it completes, if any.
    pub fn on(&mut self, digit: char) -> Option<MeetingCommand> {
        let star = std::mem::replace(&mut self.star, digit == '*');
        match (star, digit) {
            (true, '6') => Some(MeetingCommand::ToggleMute),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn plays(actions: &[Action]) -> Vec<Prompt> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Play(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    /// Types `keys` one by one, returning every action.
    fn type_keys(ivr: &mut Ivr, keys: &str, now: Instant) -> Vec<Action> {
        keys.chars()
            .flat_map(|k| ivr.on(Event::Digit(k), now))
            .collect()
    }

    fn check(id: &str, password: Option<&str>) -> Action {
        Action::Check {
            meeting_id: id.into(),
            password: password.map(str::to_owned),
        }
    }

    #[test]
    fn a_caller_with_the_right_id_and_password_is_admitted() {
        let now = Instant::now();
        let (mut ivr, actions) = Ivr::start("conference", TIMEOUT, now);
        assert_eq!(actions, vec![Action::Play(Prompt::Welcome)]);
        // Typing during the welcome stops it.
        let actions = type_keys(&mut ivr, "123456789#", now);
        assert_eq!(actions[0], Action::StopPrompts);
        assert_eq!(actions.last(), Some(&check("123456789", None)));
        assert_eq!(
            ivr.deadline(),
            None,
            "no silence timer while the API is asked"
        );
        let actions = ivr.on(Event::Answer(Answer::WrongCredentials), now);
        assert_eq!(plays(&actions), [Prompt::EnterPassword]);
        ivr.on(Event::PromptsDone, now);
        let actions = type_keys(&mut ivr, "4242#", now);
        assert_eq!(actions, vec![check("123456789", Some("4242"))]);
        let actions = ivr.on(Event::Answer(Answer::Admitted { others: Some(2) }), now);
        assert_eq!(
            plays(&actions),
            [Prompt::CorrectId, Prompt::Participants(2)]
        );
        assert!(actions.contains(&Action::Finished(Outcome::Joined)));
        assert!(ivr.in_meeting());
        assert_eq!(ivr.deadline(), None);
        // Digits in the meeting are not menu input.
        assert!(type_keys(&mut ivr, "12#", now).is_empty());
    }

    #[test]
    fn three_wrong_ids_end_the_call_after_try_again_and_bye() {
        let now = Instant::now();
        let (mut ivr, _) = Ivr::start("conference", TIMEOUT, now);
        ivr.on(Event::PromptsDone, now);
        for attempt in 1..=TRIES {
            // Too short to be a meeting ID: refused without asking the API.
            let actions = type_keys(&mut ivr, "12#", now);
            if attempt < TRIES {
                assert_eq!(plays(&actions), [Prompt::IncorrectId, Prompt::EnterId]);
                assert!(!actions.contains(&Action::HangUp));
                ivr.on(Event::PromptsDone, now);
            } else {
                assert_eq!(
                    plays(&actions),
                    [Prompt::IncorrectId, Prompt::TryAgain, Prompt::Bye]
                );
                assert!(actions.contains(&Action::HangUp));
                assert!(actions.contains(&Action::Finished(Outcome::WrongId)));
            }
        }
    }

    #[test]
    fn a_wrong_password_counts_as_a_wrong_id() {
        let now = Instant::now();
        let (mut ivr, _) = Ivr::start("conference", TIMEOUT, now);
        for attempt in 1..=TRIES {
            type_keys(&mut ivr, "000000001#", now);
            ivr.on(Event::Answer(Answer::WrongCredentials), now);
            type_keys(&mut ivr, "1#", now);
            let actions = ivr.on(Event::Answer(Answer::WrongCredentials), now);
            assert_eq!(plays(&actions)[0], Prompt::IncorrectId, "attempt {attempt}");
            assert_eq!(actions.contains(&Action::HangUp), attempt == TRIES);
        }
    }

    #[test]
    fn a_dialled_id_and_password_skip_the_questions() {
        let now = Instant::now();
        let (_, actions) = Ivr::start("123456789*4242", TIMEOUT, now);
        assert_eq!(actions, vec![check("123456789", Some("4242"))]);
        let (mut ivr, actions) = Ivr::start("123456789", TIMEOUT, now);
        assert_eq!(actions, vec![check("123456789", None)]);
        let actions = ivr.on(Event::Answer(Answer::WrongCredentials), now);
        assert_eq!(plays(&actions), [Prompt::EnterPassword]);
        // Dialled, but cannot be a meeting ID.
        let (_, actions) = Ivr::start("123", TIMEOUT, now);
        assert_eq!(plays(&actions), [Prompt::IncorrectId, Prompt::EnterId]);
        // Not digits: the usual welcome.
        let (_, actions) = Ivr::start("12ab*x", TIMEOUT, now);
        assert_eq!(plays(&actions), [Prompt::Welcome]);
    }

    #[test]
    fn silence_asks_again_then_gives_up_and_a_half_typed_id_is_submitted() {
        let start = Instant::now();
        let (mut ivr, _) = Ivr::start("conference", TIMEOUT, start);
        assert_eq!(ivr.deadline(), None, "no timer while the welcome plays");
        ivr.on(Event::PromptsDone, start);
        assert_eq!(ivr.deadline(), Some(start + TIMEOUT));
        assert!(
            ivr.on_deadline(start + TIMEOUT / 2).is_empty(),
            "not due yet"
        );
        let mut now = start + TIMEOUT;
        let actions = ivr.on_deadline(now);
        assert_eq!(plays(&actions), [Prompt::EnterId]);
        ivr.on(Event::PromptsDone, now);
        now += TIMEOUT;
        ivr.on_deadline(now);
        ivr.on(Event::PromptsDone, now);
        now += TIMEOUT;
        let actions = ivr.on_deadline(now);
        assert_eq!(plays(&actions), [Prompt::TryAgain, Prompt::Bye]);
        assert!(actions.contains(&Action::HangUp));

        // Digits then silence: what was typed is submitted.
        let (mut ivr, _) = Ivr::start("conference", TIMEOUT, start);
        ivr.on(Event::PromptsDone, start);
        type_keys(&mut ivr, "12345", start);
        type_keys(&mut ivr, "*123456", start + Duration::from_secs(1));
        assert_eq!(
            ivr.deadline(),
            Some(start + Duration::from_secs(1) + TIMEOUT)
        );
        let actions = ivr.on_deadline(start + Duration::from_secs(11));
        assert_eq!(actions, vec![check("123456", None)], "* started over");
    }

    #[test]
    fn the_api_refusing_for_other_reasons_is_told_and_ends_the_call() {
        let now = Instant::now();
        for (answer, prompts, outcome) in [
            (
                Answer::NotActive,
                vec![Prompt::NotActive, Prompt::TryAgain, Prompt::Bye],
                Outcome::NotActive,
            ),
            (
                Answer::Full,
                vec![Prompt::ConferenceFull, Prompt::Bye],
                Outcome::Full,
            ),
            (
                Answer::TooManyAttempts,
                vec![Prompt::TryAgain, Prompt::Bye],
                Outcome::TooManyAttempts,
            ),
            (
                Answer::Error,
                vec![Prompt::Error, Prompt::TryAgain, Prompt::Bye],
                Outcome::Error,
            ),
        ] {
            let (mut ivr, _) = Ivr::start("123456789*1", TIMEOUT, now);
            let actions = ivr.on(Event::Answer(answer), now);
            assert_eq!(plays(&actions), prompts);
            assert!(actions.contains(&Action::HangUp));
            assert!(actions.contains(&Action::Finished(outcome)));
        }
    }

    #[test]
    fn a_meeting_being_placed_is_asked_again_after_the_wait() {
        let now = Instant::now();
        let (mut ivr, _) = Ivr::start("123456789*1", TIMEOUT, now);
        let wait = Duration::from_secs(2);
        assert!(
            ivr.on(Event::Answer(Answer::RetryAfter(wait)), now)
                .is_empty()
        );
        assert_eq!(ivr.deadline(), Some(now + wait));
        assert_eq!(
            ivr.on_deadline(now + wait),
            vec![check("123456789", Some("1"))]
        );
        let mut at = now + wait;
        for _ in 1..MAX_RETRIES {
            ivr.on(Event::Answer(Answer::RetryAfter(wait)), at);
            at += wait;
            ivr.on_deadline(at);
        }
        let actions = ivr.on(Event::Answer(Answer::RetryAfter(wait)), at);
        assert!(
            actions.contains(&Action::Finished(Outcome::Error)),
            "{actions:?}"
        );
    }

    #[test]
    fn a_caller_waits_for_a_meeting_that_opens_soon_and_is_let_in() {
        let now = Instant::now();
        let (mut ivr, _) = Ivr::start("123456789*1", TIMEOUT, now);
        let wait = Duration::from_secs(90);
        let actions = ivr.on(Event::Answer(Answer::OpensIn(wait)), now);
        assert_eq!(plays(&actions), vec![Prompt::NotActive]);
        assert!(!actions.contains(&Action::HangUp), "{actions:?}");
        let due = now + wait + OPENING_MARGIN;
        assert_eq!(ivr.deadline(), Some(due));
        assert!(ivr.on_deadline(due - Duration::from_secs(1)).is_empty());
        assert_eq!(ivr.on_deadline(due), vec![check("123456789", Some("1"))]);
        // Still not open (the clocks differ): wait again, without repeating the prompt.
        let again = ivr.on(Event::Answer(Answer::OpensIn(Duration::from_secs(1))), due);
        assert!(plays(&again).is_empty(), "{again:?}");
        let due = due + Duration::from_secs(1) + OPENING_MARGIN;
        assert_eq!(ivr.on_deadline(due), vec![check("123456789", Some("1"))]);
        let admitted = ivr.on(Event::Answer(Answer::Admitted { others: None }), due);
        assert!(admitted.contains(&Action::Finished(Outcome::Joined)));
        assert!(ivr.in_meeting());

        // A meeting that opens later than the caller may wait: not active, goodbye.
        let (mut ivr, _) = Ivr::start("123456789*1", TIMEOUT, now);
        let later = MAX_WAIT_FOR_OPENING + Duration::from_secs(1);
        let actions = ivr.on(Event::Answer(Answer::OpensIn(later)), now);
        assert_eq!(
            plays(&actions),
            vec![Prompt::NotActive, Prompt::TryAgain, Prompt::Bye]
        );
        assert!(actions.contains(&Action::Finished(Outcome::NotActive)));
    }

    #[test]
    fn star_six_toggles_mute_and_nothing_else_does() {
        let mut keys = MeetingKeys::default();
        assert_eq!(keys.on('6'), None, "6 alone is nothing");
        assert_eq!(keys.on('*'), None);
        assert_eq!(keys.on('6'), Some(MeetingCommand::ToggleMute));
        assert_eq!(keys.on('6'), None, "the star was used up");
        assert_eq!(keys.on('*'), None);
        assert_eq!(keys.on('*'), None);
        assert_eq!(keys.on('6'), Some(MeetingCommand::ToggleMute), "** then 6");
        assert_eq!(keys.on('*'), None);
        assert_eq!(keys.on('5'), None);
        assert_eq!(keys.on('6'), None, "*5 then 6 is not *6");
    }
}
