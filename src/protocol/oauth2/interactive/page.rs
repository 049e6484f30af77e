//! Reading an identity provider's page, purely: its forms as a browser would submit them, what
//! each asks for, and the error the page shows a person.
//!
//! The page is parsed as HTML5 (html5ever, through `scraper`), so entities, unclosed tags and
//! attributes without quotes read as a browser reads them. The form authprobe fills is the one
//! that asks for what it holds — a username, a password, a one-time code, a consent decision —
//! recognised by what its fields are (`type="password"`, `autocomplete="one-time-code"`,
//! names such as `username` or `otp`), never by one vendor's wording; a language picker or a
//! search box asks for nothing authprobe holds and is never chosen. A `login:` block names the
//! form and fields where a page defeats these rules.

use scraper::{ElementRef, Html, Selector};
use secrecy::SecretString;
use url::Url;

/// Where a page defeats the defaults: the form (a CSS selector) and its fields (names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// A CSS selector of the login form(s).
    pub form: Option<String>,
    /// The username field's name.
    pub username_field: Option<String>,
    /// The password field's name.
    pub password_field: Option<String>,
    /// The one-time code field's name.
    pub otp_field: Option<String>,
}

/// How a form is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// In the URL's query.
    Get,
    /// As the body.
    Post,
}

/// What a control of a form is, for filling and for telling what the form asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `type="hidden"`: sent as it is.
    Hidden,
    /// A text field a person types in (text, email, tel, number…).
    Text,
    /// A password field.
    Password,
    /// A field for a new password (`autocomplete="new-password"`, `password-confirm`): a form
    /// with one changes or registers a password, never a login.
    NewPassword,
    /// A checkbox or radio button.
    Check,
    /// A `<select>` or `<textarea>`.
    Choice,
    /// A submit button (`<button>`, `<input type="submit">` or `image`).
    Submit,
    /// What is never sent (reset, file, plain buttons).
    Ignored,
}

/// One control of a form. Its Debug leaves out its value (hidden fields hold session ids).
#[derive(Clone)]
pub struct Control {
    /// Its `name`; empty controls are never sent.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Its value as the page gives it.
    pub value: String,
    /// A checkbox's or radio's `checked`.
    pub checked: bool,
    /// A checkbox (not a radio button): what a consent page's scopes are.
    pub checkbox: bool,
    /// An image button (`<input type="image">`).
    image: bool,
    /// Read-only: shown and sent, never typed in.
    pub readonly: bool,
    /// name, id, autocomplete, and a button's value and text, lower case: what tells its role.
    words: String,
    /// A button's `formaction`, `formmethod`.
    form_action: Option<String>,
    form_method: Option<String>,
    /// Inside `<noscript>`: a button only people without JavaScript see.
    in_noscript: bool,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// A form of a page.
#[derive(Debug, Clone)]
pub struct Form {
    /// `method`.
    pub method: Method,
    /// Where it is sent, resolved against the page (and its `<base>`), entities decoded.
    pub action: Option<Url>,
    /// Its controls, in tree order (those outside it naming it with `form=` included).
    pub controls: Vec<Control>,
    /// Whether the `login.form` selector names it (true for every form without one).
    pub hinted: bool,
    /// Whether a script of the page submits a form.
    scripts_submit: bool,
    /// What the page's relative URLs resolve against (its `<base>`, else its URL).
    base: Url,
}

/// What a form asks of authprobe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asks {
    /// A password (and the username, when it has a field for it): controls' indices.
    Password {
        /// The username field, if on the same page.
        username: Option<usize>,
        /// The password field.
        password: usize,
    },
    /// The username alone (an identifier-first login).
    Username(usize),
    /// A one-time code.
    Otp(usize),
    /// A decision: the button that approves.
    Consent(usize),
    /// Nothing a person fills: a form a script submits on load (a `form_post` response, a
    /// federated hop, a logout confirmation without JavaScript).
    AutoSubmit,
}

impl Asks {
    fn rank(self) -> u8 {
        match self {
            Asks::Password { .. } => 0,
            Asks::Username(_) => 1,
            Asks::Otp(_) => 2,
            Asks::Consent(_) => 3,
            Asks::AutoSubmit => 4,
        }
    }
}

/// A page, read.
#[derive(Debug)]
pub struct Page {
    /// Its forms, in tree order.
    pub forms: Vec<Form>,
    /// `<title>`, trimmed.
    pub title: String,
    /// The error the page shows a person (an alert, a field's message), if any.
    pub error: Option<String>,
}

/// Forms of a page looked at, controls of a form, error candidates: a hostile page (a million
/// forms, each control nested a million deep) costs a bounded amount of work.
const MAX_FORMS: usize = 32;
const MAX_CONTROLS: usize = 256;
const MAX_ERROR_CANDIDATES: usize = 32;
/// Characters of an element's text read to find an error message.
const MAX_TEXT_READ: usize = 600;

/// Words of a button that approves (consent, a confirmation).
const APPROVE: &[&str] = &[
    "allow",
    "accept",
    "approve",
    "authorize",
    "authorise",
    "consent",
    "grant",
    "agree",
    "yes",
    "confirm",
    "continue",
    "ok",
];
/// Words of a button that refuses: never pressed.
const DENY: &[&str] = &["deny", "cancel", "decline", "reject", "refuse", "abort", "no", "back"];
/// Words of a button that ends a session.
const LOG_OUT: &[&str] = &["logout", "log out", "sign out", "signout", "log off", "logoff", "sign off"];

impl Page {
    /// Reads `html`, served at `url`.
    pub fn parse(html: &str, url: &Url, hints: &Hints) -> Page {
        let doc = Html::parse_document(html);
        let base = select(&doc, &SELECTORS.base)
            .next()
            .and_then(|b| b.value().attr("href"))
            .and_then(|h| url.join(h.trim()).ok())
            .unwrap_or_else(|| url.clone());
        // A page whose script submits a form by itself (form_post, a federated hop) — unless the
        // script first asks the browser for a security key (WebAuthn): that is a credential
        // authprobe does not hold.
        let script_says = |what: &str| select(&doc, &SELECTORS.script).any(|s| s.text().any(|t| t.contains(what)));
        let scripts_submit = (script_says(".submit()")
            || select(&doc, &SELECTORS.onload).any(|b| b.value().attr("onload").is_some_and(|o| o.contains("submit"))))
            && !script_says("navigator.credentials");
        let hinted: Option<Vec<ElementRef<'_>>> =
            hints.form.as_deref().and_then(|s| Selector::parse(s).ok()).map(|s| doc.select(&s).collect());
        // Controls that name their form with form=, found once for all forms.
        let named: Vec<ElementRef<'_>> = select(&doc, &SELECTORS.form_owned).take(MAX_CONTROLS).collect();
        let mut forms = Vec::new();
        for form in select(&doc, &SELECTORS.form).take(MAX_FORMS) {
            let id = form.value().attr("id");
            let mut controls = Vec::new();
            for c in select_in(form, &SELECTORS.controls).take(MAX_CONTROLS) {
                // A control inside this form that belongs to another by its form= attribute.
                if c.value().attr("form").is_some_and(|f| Some(f) != id) {
                    continue;
                }
                controls.extend(control(c));
            }
            if let Some(id) = id {
                // Controls elsewhere that name this form.
                for c in &named {
                    if c.value().attr("form") == Some(id) && !c.ancestors().any(|a| a.id() == form.id()) {
                        controls.extend(control(*c));
                    }
                }
            }
            let method = match form.value().attr("method").map(|m| m.trim().to_ascii_lowercase()) {
                Some(m) if m == "post" => Method::Post,
                _ => Method::Get,
            };
            let action = match form.value().attr("action").map(str::trim).filter(|a| !a.is_empty()) {
                Some(a) => base.join(a).ok(),
                // No action: the page's own URL, query and all.
                None => Some(url.clone()),
            };
            let hinted = hinted.as_ref().is_none_or(|h| h.iter().any(|e| e.id() == form.id()));
            forms.push(Form { method, action, controls, hinted, scripts_submit, base: base.clone() });
        }
        let title = select(&doc, &SELECTORS.title).next().map(|t| collapse(&bounded_text(t))).unwrap_or_default();
        Page { forms, title, error: error_text(&doc) }
    }

    /// The form to fill and what it asks, by the hints first and then by what it asks: a
    /// password before a username, a code, a consent decision, and a form a script submits.
    pub fn choose(&self, hints: &Hints) -> Option<(usize, Asks)> {
        self.forms
            .iter()
            .enumerate()
            .filter(|(_, f)| f.hinted)
            .filter_map(|(i, f)| f.asks(hints).map(|a| (i, a)))
            .min_by_key(|(i, a)| (a.rank(), *i))
    }

    /// The form that confirms a logout and its button (`None` for a form a script submits),
    /// if the page has one.
    pub fn logout_confirmation(&self) -> Option<(usize, Option<usize>)> {
        self.forms.iter().enumerate().find_map(|(i, f)| {
            if f.method != Method::Post || f.asks_anything_typed() {
                return None;
            }
            let button = f.button(|w| LOG_OUT.iter().chain(APPROVE).any(|a| has_word(w, a)));
            match (button, f.asks(&Hints::default())) {
                (Some(b), _) => Some((i, Some(b))),
                (None, Some(Asks::AutoSubmit)) => Some((i, None)),
                _ => None,
            }
        })
    }

    /// The forms in a few words, for a detail: `POST /login [username password]`.
    pub fn describe_forms(&self) -> String {
        if self.forms.is_empty() {
            return "no form".to_owned();
        }
        let shown: Vec<String> = self
            .forms
            .iter()
            .take(4)
            .map(|f| {
                let fields: Vec<&str> = f
                    .controls
                    .iter()
                    .filter(|c| !matches!(c.kind, Kind::Hidden | Kind::Submit | Kind::Ignored) && !c.name.is_empty())
                    .map(|c| c.name.as_str())
                    .take(6)
                    .collect();
                let path = f.action.as_ref().map_or("(no action)".to_owned(), |u| u.path().chars().take(60).collect());
                let method = if f.method == Method::Post { "POST" } else { "GET" };
                format!("{method} {path} [{}]", fields.join(" "))
            })
            .collect();
        let more = self.forms.len().saturating_sub(4);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        format!("{} form(s): {}{more}", self.forms.len(), shown.join(", "))
    }
}

impl Form {
    /// What the form asks of authprobe, if anything.
    pub fn asks(&self, hints: &Hints) -> Option<Asks> {
        let typed = |c: &Control| !c.readonly && c.kind == Kind::Text;
        let named = |want: &Option<String>, c: &Control| want.as_deref().is_some_and(|w| c.name == w);
        if self.controls.iter().any(|c| c.kind == Kind::NewPassword) {
            return None;
        }
        let password = self
            .find(|c| c.kind == Kind::Password && (hints.password_field.is_none() || named(&hints.password_field, c)));
        let username = self.find(|c| {
            if hints.username_field.is_some() {
                named(&hints.username_field, c) && !c.readonly
            } else {
                typed(c) && is_username(&c.words)
            }
        });
        let otp = self.find(|c| {
            if hints.otp_field.is_some() {
                named(&hints.otp_field, c)
            } else {
                (typed(c) || c.kind == Kind::Password) && is_otp(&c.words)
            }
        });
        // Secrets travel in a body only.
        let post = self.method == Method::Post;
        match (password, otp) {
            (Some(p), Some(o)) if p == o => return post.then_some(Asks::Otp(o)),
            (Some(p), _) => return post.then_some(Asks::Password { username, password: p }),
            (None, Some(o)) => return post.then_some(Asks::Otp(o)),
            (None, None) => {}
        }
        if let Some(u) = username {
            return Some(Asks::Username(u));
        }
        if self.asks_anything_typed() {
            return None;
        }
        if post {
            if let Some(b) = self.button(|w| APPROVE.iter().any(|a| has_word(w, a))) {
                return Some(Asks::Consent(b));
            }
        }
        // Only hidden fields, submitted by a script or else by a button only people without
        // JavaScript see: a page meant to be submitted by itself.
        let hidden = self.controls.iter().any(|c| c.kind == Kind::Hidden);
        let buttons: Vec<&Control> = self.controls.iter().filter(|c| c.kind == Kind::Submit).collect();
        let noscript_only = !buttons.is_empty() && buttons.iter().all(|b| b.in_noscript);
        (hidden && (noscript_only || self.scripts_submit)).then_some(Asks::AutoSubmit)
    }

    /// Whether a person would type or pick something in it.
    fn asks_anything_typed(&self) -> bool {
        self.controls.iter().any(|c| matches!(c.kind, Kind::Text | Kind::Password | Kind::Choice) && !c.readonly)
    }

    fn find(&self, pred: impl Fn(&Control) -> bool) -> Option<usize> {
        self.controls.iter().position(pred)
    }

    /// The first visible submit button whose words `want`, and none that refuses.
    fn button(&self, want: impl Fn(&str) -> bool) -> Option<usize> {
        self.find(|c| {
            c.kind == Kind::Submit && !c.in_noscript && want(&c.words) && !DENY.iter().any(|d| has_word(&c.words, d))
        })
    }

    /// The button that submits a form of credentials: the first that does not refuse.
    pub fn submit_button(&self) -> Option<usize> {
        self.find(|c| c.kind == Kind::Submit && !DENY.iter().any(|d| has_word(&c.words, d)))
    }

    /// Where pressing `button` sends the form, and how.
    pub fn target(&self, button: Option<usize>) -> (Option<Url>, Method) {
        let b = button.and_then(|i| self.controls.get(i));
        let action = match b.and_then(|b| b.form_action.as_deref()).map(str::trim).filter(|a| !a.is_empty()) {
            Some(a) => self.base.join(a).ok(),
            None => self.action.clone(),
        };
        let method = match b.and_then(|b| b.form_method.as_deref()) {
            Some(m) if m.eq_ignore_ascii_case("post") => Method::Post,
            Some(m) if m.eq_ignore_ascii_case("get") => Method::Get,
            _ => self.method,
        };
        (action, method)
    }

    /// What approving a consent form sends: its approving `button` pressed and every checkbox
    /// ticked (Spring Authorization Server and Ory Hydra list the scopes as checkboxes, unticked:
    /// the client gets what it asked only if they are ticked).
    pub fn consent_entries(&self, button: usize) -> Vec<(String, SecretString)> {
        self.entry_list(Some(button), &[], true)
    }

    /// The fields a browser would send with `button` pressed (HTML's "constructing the entry
    /// list"), with `ours` in place of the page's values. Every value is a secret to traces.
    pub fn entries(&self, button: Option<usize>, ours: &[(usize, &SecretString)]) -> Vec<(String, SecretString)> {
        self.entry_list(button, ours, false)
    }

    /// [`Form::entries`], with every checkbox ticked when `tick`.
    fn entry_list(
        &self,
        button: Option<usize>,
        ours: &[(usize, &SecretString)],
        tick: bool,
    ) -> Vec<(String, SecretString)> {
        let mut out = Vec::new();
        for (i, c) in self.controls.iter().enumerate() {
            if c.name.is_empty() {
                continue;
            }
            if let Some((_, v)) = ours.iter().find(|(at, _)| *at == i) {
                out.push((c.name.clone(), (*v).clone()));
                continue;
            }
            let send = match c.kind {
                Kind::Hidden | Kind::Text | Kind::Password | Kind::NewPassword | Kind::Choice => true,
                Kind::Check => c.checked || (tick && c.checkbox),
                Kind::Submit if button == Some(i) && c.image => {
                    // An image button sends where it was clicked, not a value.
                    out.push((format!("{}.x", c.name), SecretString::from("0".to_owned())));
                    out.push((format!("{}.y", c.name), SecretString::from("0".to_owned())));
                    false
                }
                Kind::Submit => button == Some(i),
                Kind::Ignored => false,
            };
            if send {
                out.push((c.name.clone(), SecretString::from(c.value.clone())));
            }
        }
        out
    }
}

/// The control an element is, if it is one that takes part (disabled ones do not).
fn control(e: ElementRef<'_>) -> Option<Control> {
    let el = e.value();
    if el.attr("disabled").is_some() {
        return None;
    }
    // Inside a disabled fieldset (but for its first legend), a control is disabled too.
    let fieldset_disabled = e.ancestors().filter_map(ElementRef::wrap).take(64).any(|a| {
        a.value().name() == "fieldset"
            && a.value().attr("disabled").is_some()
            && !a
                .children()
                .filter_map(ElementRef::wrap)
                .find(|c| c.value().name() == "legend")
                .is_some_and(|legend| e.ancestors().any(|x| x.id() == legend.id()))
    });
    if fieldset_disabled {
        return None;
    }
    let attr = |n: &str| el.attr(n).unwrap_or_default().trim().to_owned();
    let ty = attr("type").to_ascii_lowercase();
    let autocomplete = attr("autocomplete").to_ascii_lowercase();
    let name = el.attr("name").unwrap_or_default().to_owned();
    let mut words = format!("{} {} {}", name.to_ascii_lowercase(), attr("id").to_ascii_lowercase(), autocomplete);
    let (kind, value) = match el.name() {
        "button" => {
            // A type HTML does not know is a submit button, as a missing one is.
            let kind = if matches!(ty.as_str(), "reset" | "button") { Kind::Ignored } else { Kind::Submit };
            let text = collapse(&bounded_text(e));
            words = format!("{words} {} {}", attr("value").to_ascii_lowercase(), text.to_ascii_lowercase());
            (kind, el.attr("value").unwrap_or_default().to_owned())
        }
        "select" => {
            let options: Vec<ElementRef<'_>> = select_in(e, &SELECTORS.option).collect();
            let chosen = options.iter().find(|o| o.value().attr("selected").is_some()).or(options.first());
            let value = chosen.map(|o| {
                o.value().attr("value").map_or_else(|| collapse(&o.text().collect::<String>()), str::to_owned)
            });
            match value {
                Some(v) => (Kind::Choice, v),
                // A select without options sends nothing.
                None => (Kind::Ignored, String::new()),
            }
        }
        "textarea" => (Kind::Choice, bounded_text(e)),
        _ => {
            let value = el.attr("value").unwrap_or_default().to_owned();
            let kind = match ty.as_str() {
                "hidden" => Kind::Hidden,
                "password" if is_new_password(&words) => Kind::NewPassword,
                "password" => Kind::Password,
                "checkbox" | "radio" => Kind::Check,
                "submit" | "image" => {
                    words = format!("{words} {}", value.to_ascii_lowercase());
                    Kind::Submit
                }
                "reset" | "file" | "button" => Kind::Ignored,
                _ => Kind::Text,
            };
            let value = if kind == Kind::Check && el.attr("value").is_none() { "on".to_owned() } else { value };
            (kind, value)
        }
    };
    Some(Control {
        name,
        kind,
        value,
        checked: el.attr("checked").is_some(),
        checkbox: kind == Kind::Check && ty == "checkbox",
        image: el.name() == "input" && ty == "image",
        readonly: el.attr("readonly").is_some(),
        words,
        form_action: el.attr("formaction").map(str::to_owned),
        form_method: el.attr("formmethod").map(str::to_owned),
        in_noscript: e.ancestors().any(|a| a.value().as_element().is_some_and(|el| el.name() == "noscript")),
    })
}

/// The words of a control split into tokens at anything not a letter or digit.
fn tokens(words: &str) -> impl Iterator<Item = &str> {
    words.split(|c: char| !c.is_ascii_alphanumeric()).filter(|t| !t.is_empty())
}

/// Whether `words` has `word` (or, for several words, the phrase) as a whole.
fn has_word(words: &str, word: &str) -> bool {
    if word.contains(' ') {
        return words.contains(word);
    }
    tokens(words).any(|t| t == word)
}

fn is_username(words: &str) -> bool {
    words.contains("username")
        || words.contains("email")
        || tokens(words).any(|t| {
            matches!(
                t,
                "user"
                    | "login"
                    | "loginfmt"
                    | "identifier"
                    | "userid"
                    | "uid"
                    | "mail"
                    | "account"
                    | "principal"
                    | "signin"
            ) || t.ends_with("username")
        })
}

fn is_otp(words: &str) -> bool {
    words.contains("one-time-code")
        || words.contains("otp")
        || words.contains("passcode")
        || tokens(words).any(|t| {
            matches!(
                t,
                "code" | "otc" | "mfa" | "2fa" | "totp" | "onetimecode" | "authcode" | "verificationcode" | "token"
            )
        })
}

fn is_new_password(words: &str) -> bool {
    words.contains("new-password")
        || tokens(words).any(|t| matches!(t, "new" | "confirm" | "repeat" | "again" | "verify"))
        || words.contains("password-new")
        || words.contains("newpassword")
        || words.contains("passwordconfirm")
}

/// Elements whose class, id or role mark an error a person is shown.
const ERROR_SELECTOR: &str = "[role=alert], .alert, .errornote, .errorlist, .kc-feedback-text, .invalid-feedback, \
    [class*=error], [id*=error], [aria-live=assertive], [aria-live=polite]";

/// The first visible error text of the page, whitespace collapsed.
fn error_text(doc: &Html) -> Option<String> {
    let hidden = |e: &ElementRef<'_>| {
        std::iter::once(**e).chain(e.ancestors()).filter_map(|n| n.value().as_element()).any(|el| {
            el.attr("hidden").is_some()
                || el.attr("aria-hidden") == Some("true")
                || el.attr("style").is_some_and(|s| s.replace(' ', "").to_ascii_lowercase().contains("display:none"))
                || matches!(el.name(), "input" | "script" | "style" | "template" | "noscript")
        })
    };
    select(doc, &SELECTORS.error)
        .take(MAX_ERROR_CANDIDATES)
        .filter(|e| !hidden(e))
        .map(|e| collapse(&message_text(e)))
        .find(|t| !t.is_empty() && t.chars().count() <= 300)
}

/// An error element's message: its text without that of its links and buttons ("Forgot
/// password?", "Back to application" sit beside messages, and are not them).
fn message_text(e: ElementRef<'_>) -> String {
    let mut out = String::new();
    // An element holding the page is no message: a bounded look at it.
    for node in e.descendants().take(MAX_TEXT_READ * 4) {
        let Some(text) = node.value().as_text() else { continue };
        let in_control = node
            .ancestors()
            .take_while(|a| a.id() != e.id())
            .filter_map(|a| a.value().as_element())
            .any(|el| matches!(el.name(), "a" | "button" | "script" | "style"));
        if !in_control {
            out.push_str(text);
            if out.len() > MAX_TEXT_READ {
                break;
            }
        }
    }
    out
}

/// An element's text, at most [`MAX_TEXT_READ`] bytes of it (an error message is short; an element
/// holding the whole page is not one).
fn bounded_text(e: ElementRef<'_>) -> String {
    let mut out = String::new();
    for t in e.text() {
        if out.len() + t.len() > MAX_TEXT_READ {
            let room = MAX_TEXT_READ.saturating_sub(out.len());
            let end = (0..=room.min(t.len())).rev().find(|i| t.is_char_boundary(*i)).unwrap_or(0);
            out.push_str(&t[..end]);
            break;
        }
        out.push_str(t);
    }
    out
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The page reader's selectors, compiled once rather than at every page and form.
struct Selectors {
    base: Selector,
    script: Selector,
    onload: Selector,
    form_owned: Selector,
    form: Selector,
    controls: Selector,
    title: Selector,
    option: Selector,
    error: Selector,
}

static SELECTORS: std::sync::LazyLock<Selectors> = std::sync::LazyLock::new(|| {
    let s = |text: &str| Selector::parse(text).expect("a valid built-in selector");
    Selectors {
        base: s("base[href]"),
        script: s("script"),
        onload: s("body[onload]"),
        form_owned: s("input[form], button[form], select[form], textarea[form]"),
        form: s("form"),
        controls: s("input, button, select, textarea"),
        title: s("title"),
        option: s("option"),
        error: s(ERROR_SELECTOR),
    }
});

/// Elements of `doc` matching `selector`, in tree order, found as they are asked for.
fn select<'a>(doc: &'a Html, selector: &'static Selector) -> impl Iterator<Item = ElementRef<'a>> + 'a {
    let mut nodes = doc.tree.root().descendants();
    std::iter::from_fn(move || nodes.by_ref().filter_map(ElementRef::wrap).find(|e| selector.matches(e)))
}

/// Descendants of `e` matching `selector`, found as they are asked for.
fn select_in<'a>(e: ElementRef<'a>, selector: &'static Selector) -> impl Iterator<Item = ElementRef<'a>> + 'a {
    let mut nodes = e.descendants();
    nodes.next();
    std::iter::from_fn(move || nodes.by_ref().filter_map(ElementRef::wrap).find(|e| selector.matches(e)))
}

/// Deepest nesting of elements a page is read with. HTML's tree builder checks the stack of open
/// elements at every tag, so a page nesting a hundred thousand elements takes minutes to build;
/// browsers cap nesting for the same reason (Blink at 512).
pub const MAX_NESTING: usize = 1024;

/// How deep `html` nests elements, as HTML's tree builder would nest them or deeper, from one
/// pass over its tags: a stack of the open elements' names, where an end tag closes up to the
/// nearest open element of its name (a stray one closes nothing) and `/>` closes only in SVG and
/// MathML (HTML ignores it elsewhere). Void elements and those HTML closes by itself (`p`, `li`,
/// `option`, table cells…) are not pushed; comments (`-->` or `--!>`), and the text of scripts,
/// styles, textareas and titles outside SVG and MathML, are skipped. Stops past
/// [`MAX_NESTING`].
pub fn nesting(html: &str) -> usize {
    const UNCOUNTED: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr", "p",
        "li", "option", "optgroup", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "rb", "rt", "rp",
        "colgroup", "caption", "html", "head", "body", "param", "keygen", "frame", "basefont", "bgsound",
    ];
    const RAW_TEXT: &[&str] = &["script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"];
    /// How far down the stack an end tag looks for its element: further, it is taken as stray
    /// (the estimate can only grow, never hide nesting).
    const END_TAG_REACH: usize = 64;
    let bytes = html.as_bytes();
    let mut open: Vec<String> = Vec::new();
    let mut deepest = 0usize;
    let mut i = 0usize;
    let find = |from: usize, needle: &[u8]| {
        bytes[from.min(bytes.len())..]
            .windows(needle.len())
            .position(|w| w.eq_ignore_ascii_case(needle))
            .map(|p| from + p)
    };
    while let Some(at) = bytes[i..].iter().position(|b| *b == b'<').map(|p| p + i) {
        let rest = &bytes[at + 1..];
        if rest.starts_with(b"!--") {
            // A comment ends at the first --> or --!> (or <!--> and <!---> at once).
            let body = at + 4;
            if bytes[body..].starts_with(b">") || bytes[body..].starts_with(b"->") {
                i = body + 1;
                continue;
            }
            // One scan for whichever ends it first.
            let mut end = bytes.len();
            let mut k = body;
            while let Some(d) = find(k, b"--") {
                match &bytes[d + 2..] {
                    [b'>', ..] => {
                        end = d + 3;
                        break;
                    }
                    [b'!', b'>', ..] => {
                        end = d + 4;
                        break;
                    }
                    _ => k = d + 1,
                }
            }
            i = end;
            continue;
        }
        let closing = rest.first() == Some(&b'/');
        let name: String = rest
            .iter()
            .skip(usize::from(closing))
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-' || **c == b':')
            .take(32)
            .map(|c| c.to_ascii_lowercase() as char)
            .collect();
        let tag_end = bytes[at + 1..].iter().position(|b| *b == b'>').map_or(bytes.len(), |e| at + 1 + e + 1);
        i = tag_end;
        if name.is_empty() || !name.as_bytes()[0].is_ascii_alphabetic() || UNCOUNTED.contains(&name.as_str()) {
            continue;
        }
        let foreign = open.iter().any(|n| n == "svg" || n == "math");
        if closing {
            let reach = open.len().saturating_sub(END_TAG_REACH);
            if let Some(p) = open[reach..].iter().rposition(|n| *n == name) {
                open.truncate(reach + p);
            }
            continue;
        }
        if foreign && bytes[..tag_end].ends_with(b"/>") {
            continue;
        }
        if !foreign && RAW_TEXT.contains(&name.as_str()) {
            // Its text is not HTML: skip past its end tag, which closes nothing counted.
            let end = find(i, format!("</{name}").as_bytes()).unwrap_or(bytes.len());
            i = bytes[end..].iter().position(|b| *b == b'>').map_or(bytes.len(), |e| end + e + 1);
            continue;
        }
        open.push(name);
        deepest = deepest.max(open.len());
        if deepest > MAX_NESTING {
            break;
        }
    }
    deepest
}

/// Whether `selector` is a CSS selector authprobe can use (configuration checks).
pub fn valid_selector(selector: &str) -> bool {
    Selector::parse(selector).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    fn page(html: &str) -> Page {
        Page::parse(html, &Url::parse("https://idp.test/realms/x/auth?client_id=web&tab=1").unwrap(), &Hints::default())
    }

    #[test]
    fn the_login_form_is_chosen_over_decoys() {
        let p = page(
            r#"<title> Sign in </title><form method="get" action="/lang"><select name="lang"><option value="en">English</option></select><button>Change</button></form>
            <form id="kc-form-login" method="post" action="/interaction/U1/login?src=page&amp;v=2">
              <input type="hidden" name="csrf" value="c-1"><input type="text" id="username" name="username" autocomplete="username">
              <input type="password" id="password" name="password"><label><input type="checkbox" name="rememberMe"> Remember</label>
              <button type="submit" name="login" value="sign-in">Sign in</button></form>
            <form action="/search"><input type="text" name="q"></form>"#,
        );
        assert_eq!(p.title, "Sign in");
        let (i, asks) = p.choose(&Hints::default()).unwrap();
        assert_eq!(i, 1);
        assert_eq!(asks, Asks::Password { username: Some(1), password: 2 });
        let f = &p.forms[i];
        assert_eq!(f.action.as_ref().unwrap().as_str(), "https://idp.test/interaction/U1/login?src=page&v=2");
        let user = SecretString::from("probe".to_owned());
        let pw = SecretString::from("pw-Zz1".to_owned());
        let b = f.submit_button();
        let entries: Vec<(String, String)> =
            f.entries(b, &[(1, &user), (2, &pw)]).into_iter().map(|(n, v)| (n, v.expose_secret().to_owned())).collect();
        let want: Vec<(String, String)> =
            [("csrf", "c-1"), ("username", "probe"), ("password", "pw-Zz1"), ("login", "sign-in")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        assert_eq!(entries, want);
    }

    #[test]
    fn identifier_first_otp_consent_and_auto_submit_pages() {
        let id_first = page(
            r#"<form method="post"><input type="email" name="identifier" autocomplete="username"><button>Next</button></form>"#,
        );
        assert_eq!(id_first.choose(&Hints::default()).unwrap().1, Asks::Username(0));
        let second = page(
            r#"<form method="post" action="pw"><input type="hidden" name="username" value="u"><input type="password" name="password"></form>"#,
        );
        assert_eq!(second.choose(&Hints::default()).unwrap().1, Asks::Password { username: None, password: 1 });
        let otp = page(
            r#"<form method="post"><input name="otp" inputmode="numeric" autocomplete="one-time-code"><button>Verify</button></form>"#,
        );
        assert_eq!(otp.choose(&Hints::default()).unwrap().1, Asks::Otp(0));
        // Django OAuth Toolkit: no action, an unnamed Cancel, and allow.
        let consent = page(
            r#"<form id="authorizationForm" method="post"><input type="hidden" name="client_id" value="c">
            <input type="submit" class="btn" value="Cancel"/><input type="submit" name="allow" value="Authorize"/></form>"#,
        );
        let (i, asks) = consent.choose(&Hints::default()).unwrap();
        assert_eq!(asks, Asks::Consent(2));
        assert_eq!(
            consent.forms[i].action.as_ref().unwrap().as_str(),
            "https://idp.test/realms/x/auth?client_id=web&tab=1"
        );
        let deny_first = page(
            r#"<form method="post"><button name="decision" value="deny">Deny</button><button name="decision" value="allow">Allow</button></form>"#,
        );
        assert_eq!(deny_first.choose(&Hints::default()).unwrap().1, Asks::Consent(1));
        let auto = page(
            r#"<body onload="document.forms[0].submit()"><form method="post" action="https://rp/cb"><input type="hidden" name="code" value="x"><noscript><button>Continue</button></noscript></form>"#,
        );
        assert_eq!(auto.choose(&Hints::default()).unwrap().1, Asks::AutoSubmit);
        let nothing = page(r#"<form method="post"><input name="q"><button>Search</button></form><p>Hello</p>"#);
        assert_eq!(nothing.choose(&Hints::default()), None);
        let change = page(
            r#"<form method="post"><input type="password" name="password-new"><input type="password" name="password-confirm"></form>"#,
        );
        assert_eq!(change.choose(&Hints::default()), None);
        // A password in a GET form would travel in the URL: never filled.
        let get = page(r#"<form><input name="username"><input type="password" name="password"></form>"#);
        assert_eq!(get.choose(&Hints::default()), None);
    }

    #[test]
    fn buttons_outside_their_form_and_hints() {
        let p = page(
            r#"<form id="op.logoutForm" method="post" action="/session/end/confirm"><input type="hidden" name="xsrf" value="x"></form>
            <button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>"#,
        );
        assert_eq!(p.logout_confirmation(), Some((0, Some(1))));
        let hints = Hints { form: Some("#second".into()), username_field: Some("j_user".into()), ..Hints::default() };
        let html = r#"<form id="first" method="post"><input name="username"><input type="password" name="password"></form>
            <form id="second" method="post"><input name="j_user"><input type="password" name="j_pass"></form>"#;
        let p = Page::parse(html, &Url::parse("https://idp.test/").unwrap(), &hints);
        assert_eq!(p.choose(&hints), Some((1, Asks::Password { username: Some(0), password: 1 })));
        assert!(valid_selector("#kc-form-login") && !valid_selector("##"));
    }

    #[test]
    fn controls_are_sent_as_a_browser_sends_them() {
        let p = page(
            r#"<base href="https://other.test/dir/"><form method="post" action="a">
            <fieldset disabled><legend><input name="in-legend" value="1"></legend><input name="off" value="2"></fieldset>
            <select name="empty"></select><input type="password" name="password">
            <button type="weird" name="go" value="v" formaction="b">Go</button><input type="image" name="pic" src="x.png"></form>"#,
        );
        let f = &p.forms[0];
        assert_eq!(f.action.as_ref().unwrap().as_str(), "https://other.test/dir/a");
        let go = f.submit_button().unwrap();
        assert_eq!(f.target(Some(go)).0.unwrap().as_str(), "https://other.test/dir/b", "formaction against <base>");
        let names = |b| f.entries(Some(b), &[]).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(go), ["in-legend", "password", "go"], "disabled fieldset and an empty select left out");
        let pic = f.controls.iter().position(|c| c.name == "pic").unwrap();
        assert_eq!(names(pic), ["in-legend", "password", "pic.x", "pic.y"]);
        assert!(!format!("{:?}", f.controls).contains("\"1\""), "Debug leaves values out");
    }

    #[test]
    fn the_visible_error_is_read() {
        let p = page(
            r#"<div class="alert alert-error" hidden>Old</div><div class="alert alert-error" role="alert"><span class="kc-feedback-text">Invalid   username or password.</span></div>"#,
        );
        assert_eq!(p.error.as_deref(), Some("Invalid username or password."));
        let django = page(r#"<p class="errornote">Your username and password didn't match.</p>"#);
        assert_eq!(django.error.as_deref(), Some("Your username and password didn't match."));
        assert_eq!(page("<p>fine</p>").error, None);
    }
}

#[cfg(test)]
mod hostile {
    use super::*;
    use proptest::prelude::*;
    use std::time::Instant;

    fn read(html: &str) -> Page {
        let page = Page::parse(html, &Url::parse("https://idp.test/a/b?c=d").unwrap(), &Hints::default());
        if let Some((i, asks)) = page.choose(&Hints::default()) {
            let form = &page.forms[i];
            let field = match asks {
                Asks::Password { password, .. } => Some(password),
                Asks::Username(f) | Asks::Otp(f) | Asks::Consent(f) => Some(f),
                Asks::AutoSubmit => None,
            };
            if let Some(f) = field {
                assert!(f < form.controls.len());
            }
            if let Asks::Password { password, .. } = asks {
                assert_eq!(form.controls[password].kind, Kind::Password);
                assert_eq!(form.method, Method::Post, "a password only in a body");
            }
            let _ = form.entries(form.submit_button(), &[]);
            let (action, _) = form.target(form.submit_button());
            assert!(action.is_none_or(|a| a.has_host() || a.scheme() != "https"));
        }
        assert!(page.forms.len() <= MAX_FORMS && page.forms.iter().all(|f| f.controls.len() <= 2 * MAX_CONTROLS));
        assert!(page.describe_forms().chars().count() < 1200);
        assert!(page.error.as_ref().is_none_or(|e| e.chars().count() <= 300));
        page
    }

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("<form method=post action='/x?a=1&amp;b=2'>".to_owned()),
            Just("</form>".to_owned()),
            "<form action='[a-z:/.?=&;%]{0,24}' method=(get|post|dialog) id=[ab]{0,1}>",
            "<input type=(text|password|hidden|email|submit|checkbox|image|) name=[a-z_]{0,9} value=\"[a-z&;#0-9<>\"]{0,8}\" (autocomplete=username|autocomplete=one-time-code|form=a|readonly|disabled|checked|)>",
            "<button (name=allow|name=decision value=deny|type=button|form=b|formaction=//evil/x|)>[A-Za-z ]{0,10}</button>",
            Just("<div class=error role=alert>".to_owned()),
            Just("</div>".to_owned()),
            Just("<noscript>".to_owned()),
            Just("<select name=s><option value=1 selected>a<option>b</select>".to_owned()),
            Just("<textarea name=t>x</textarea>".to_owned()),
            Just("<base href='http://elsewhere.test/'>".to_owned()),
            Just("<script>document.forms[0].submit()</script>".to_owned()),
            Just("<table><tr><td><form>".to_owned()),
            ".{0,16}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_is_read_safely(html in ".{0,3000}") {
            read(&html);
        }

        #[test]
        fn generated_pages_are_read_safely(parts in prop::collection::vec(fragment(), 0..80)) {
            read(&parts.concat());
        }
    }

    #[test]
    fn nesting_is_bounded_from_above() {
        assert_eq!(nesting("<html><body><div><p>a<p>b<ul><li>x<li>y</ul></div><br><img src=x></body>"), 2);
        assert_eq!(nesting("<div><!-- <div><div> --><script>'<div><div><div>'</script><svg><path/></svg></div>"), 2);
        // What the tree builder nests, however it is written.
        assert!(nesting(&"<div/>".repeat(2000)) > MAX_NESTING, "/> closes nothing in HTML");
        assert!(nesting(&"<div></i>".repeat(2000)) > MAX_NESTING, "a stray end tag closes nothing");
        assert!(nesting(&format!("<!-- a --!>{}", "<div>".repeat(2000))) > MAX_NESTING, "--!> ends a comment");
        // Many comments cost one pass: each search ends at its own terminator.
        let many = "<!-- c -->".repeat(100_000);
        let started = Instant::now();
        assert_eq!(nesting(&many), 0);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(nesting(&format!("<svg><title>{}", "<div>".repeat(2000))) > MAX_NESTING, "SVG's title is no raw text");
        assert_eq!(nesting(&"<svg><path d='x'/><circle/></svg>".repeat(2000)), 1, "SVG's /> closes");
        assert!(nesting(&"<div>".repeat(5000)) > MAX_NESTING);
        assert!(nesting(&"<b>".repeat(2000)) > MAX_NESTING);
        assert_eq!(nesting(&"<div></div>".repeat(5000)), 1);
        assert_eq!(nesting(&"<SCRIPT>x</Script><div>".repeat(600)), 600);
        for cut in ["<", "<!--", "<script>", "<div", "</"] {
            let _ = nesting(cut);
        }
    }

    /// Pages built to cost: forms by the thousand, controls naming a form by the thousand, an
    /// error class on every one of thousands of nested elements. The work stays bounded.
    #[test]
    fn huge_and_deep_pages_cost_bounded_work() {
        let cap = 64 * 1024;
        let pages = [
            "<div class=error>".repeat(cap / 17),
            "<form id=f method=post><input name=u form=f><input type=password name=p></form>".repeat(cap / 80),
            format!("<form id=f method=post></form>{}", "<input form=f name=x>".repeat(cap / 21)),
            format!("<form method=post>{}</form>", "<span class=error>e".repeat(cap / 20)),
        ];
        for html in pages {
            let started = Instant::now();
            read(&html);
            let took = started.elapsed();
            println!("{} bytes: {took:?}", html.len());
        }
    }
}
