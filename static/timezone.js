// Fills the sign-up form's hidden time zone from the browser, so digests come at the
// reader's local hour. Without JavaScript the field stays empty and UTC applies.
"use strict";
document.querySelectorAll('input[name="timezone"]').forEach(function (field) {
  try {
    field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (error) {
    field.value = "";
  }
});
