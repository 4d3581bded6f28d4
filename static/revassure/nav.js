'use strict';
// The navigation sidebar starts collapsed below 1600 px, so change lists get
// the width their columns need. Django's nav_sidebar.js (deferred, so it runs
// after this) reads the same key; once a person toggles the sidebar, their
// choice is kept there and this does nothing.
{
    const key = 'django.admin.navSidebarIsOpen';
    try {
        if (localStorage.getItem(key) === null && window.matchMedia('(max-width: 1599px)').matches) {
            localStorage.setItem(key, 'false');
        }
    } catch (e) {
        // Storage refused (private mode): Django's default, open, applies.
    }
}
// Times are shown in the viewer's zone (revassure/timezones.py reads this
// cookie on the next request); no zone from the browser: UTC, named as such.
{
    try {
        const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
        if (zone && !document.cookie.split('; ').includes('revassure_tz=' + encodeURIComponent(zone))) {
            document.cookie = 'revassure_tz=' + encodeURIComponent(zone) + '; path=/; max-age=31536000; SameSite=Lax';
        }
    } catch (e) {
        // No Intl time zone: the server's zone (UTC) applies.
    }
}
