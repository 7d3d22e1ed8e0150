//! `[template]`: title and message templates per event class, checked for syntax at load.

use super::errs::Errs;
use super::raw::RawTemplate;
use super::Templates;
use toml::Spanned;

/// The templates; a template that does not parse is an error and stays unset.
pub(super) fn parse(raw: Option<&Spanned<RawTemplate>>, e: &mut Errs) -> Templates {
    let mut template = Templates::default();
    if let Some(t) = raw {
        let t = t.get_ref();
        for (src, field, slot) in [
            (&t.title, "template.title", &mut template.title),
            (&t.message, "template.message", &mut template.message),
            (
                &t.recover_title,
                "template.recover_title",
                &mut template.recover_title,
            ),
            (
                &t.recover_message,
                "template.recover_message",
                &mut template.recover_message,
            ),
            (
                &t.nodata_title,
                "template.nodata_title",
                &mut template.nodata_title,
            ),
            (
                &t.nodata_message,
                "template.nodata_message",
                &mut template.nodata_message,
            ),
        ] {
            if let Some(s) = src {
                match crate::model::event::validate_template(s.get_ref()) {
                    Ok(()) => *slot = Some(s.get_ref().clone()),
                    Err(msg) => e.bad(s, field, &msg),
                }
            }
        }
    }
    template
}
