//! LDAP and Active Directory binds (issue 27, under way): what a directory says, read — the BER
//! of its messages ([`ber`]), the messages of a bind probe ([`message`]) and why a bind was
//! refused ([`classify`]), each tested on the bytes and words of real directories (Debian's
//! slapd with ppolicy, Samba's AD DC: tests/slapd, tests/samba). The family itself — its
//! configuration, its flow over [`crate::protocol::socket`], its registration — comes next.

pub mod ber;
pub mod classify;
pub mod message;
