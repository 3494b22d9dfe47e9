"""A real WordPress for tests: Debian's `wordpress` package served by PHP's built-in server on
the machine's MariaDB, installed from the command line, with our plugin file installed as an
admin would install it. Everything it makes (a copy of the site, a database) is its own.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import requests

from tests.support.smtp import free_port

WORDPRESS = Path("/usr/share/wordpress")
THEME = WORDPRESS / "wp-content/themes/twentytwentythree"
PLUGIN = Path(__file__).resolve().parents[2] / "integrations/wordpress/notifier.php"
MARIADB = {"host": "127.0.0.1", "user": "root", "password": ""}


def missing_parts() -> str | None:
    """Why a WordPress cannot run here, or None."""
    if not (WORDPRESS / "wp-settings.php").exists() or not THEME.exists():
        return (
            "needs Debian's wordpress and wordpress-theme-twentytwentythree (.ci/run installs them)"
        )
    if shutil.which("php") is None:
        return "needs php-cli, php-mysql, php-xml, php-curl, php-mbstring (.ci/run installs them)"
    probe = subprocess.run(
        ["php", "-r", _mysqli("echo 'ok';")], capture_output=True, text=True, timeout=30
    )
    if probe.stdout != "ok":
        return f"needs MariaDB on 127.0.0.1:3306 (root, no password): {probe.stderr[-300:]}"
    return None


def _mysqli(then: str) -> str:
    return (
        "mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);"
        f"$db = new mysqli('{MARIADB['host']}', '{MARIADB['user']}', '{MARIADB['password']}');"
        + then
    )


class WordPress:
    """One site: `start()` installs and serves it, `stop()` removes it and its database."""

    def __init__(self, root: Path, categories: list[str]) -> None:
        self.root = root / "site"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = f"notifier_wp_{secrets.token_hex(4)}"
        self.categories = categories
        self.term_ids: dict[str, int] = {}
        self.server: subprocess.Popen | None = None
        self.log_path = root / "php-server.log"
        self.app_password = ""

    # ---- life cycle --------------------------------------------------------------------------

    def start(self) -> WordPress:
        subprocess.run(["php", "-r", _mysqli(f"$db->query('CREATE DATABASE {self.database}');")],
                       check=True, timeout=30)  # fmt: skip
        shutil.copytree(WORDPRESS, self.root, symlinks=False,
                        ignore=shutil.ignore_patterns(".htaccess", "wp-config.php"))  # fmt: skip
        plugins = self.root / "wp-content/plugins/notifier"
        plugins.mkdir(parents=True)
        shutil.copy(PLUGIN, plugins / "notifier.php")  # as an admin copies it
        (self.root / "wp-config.php").write_text(self._config())
        (self.root / "router.php").write_text(ROUTER)
        installed = self.php(INSTALL, categories=self.categories)
        self.term_ids, self.app_password = installed["terms"], installed["app_password"]
        env = {**os.environ, "PHP_CLI_SERVER_WORKERS": "4"}
        with self.log_path.open("wb") as log:  # the server keeps its own copy of the handle
            self.server = subprocess.Popen(
                ["php", "-S", f"127.0.0.1:{self.port}", "-t", str(self.root), "router.php"],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers are stopped with it (stop())
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{self.url}/?feed=rss2", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"WordPress never answered:\n{self.log()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.server is not None:
            # PHP_CLI_SERVER_WORKERS forks workers that outlive a terminated parent: the
            # whole process group goes, or they keep serving (and holding the port) after
            # the test run.
            self.server.terminate()
            try:
                self.server.wait(10)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.server.pid, signal.SIGKILL)
        subprocess.run(["php", "-r", _mysqli(f"$db->query('DROP DATABASE {self.database}');")],
                       timeout=30)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def _config(self) -> str:
        salts = "".join(
            f"define('{name}', '{secrets.token_hex(24)}');\n"
            for name in ("AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT",
                         "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT")
        )  # fmt: skip
        return (
            textwrap.dedent(f"""\
            <?php
            define('DB_NAME', '{self.database}');
            define('DB_USER', '{MARIADB["user"]}');
            define('DB_PASSWORD', '{MARIADB["password"]}');
            define('DB_HOST', '{MARIADB["host"]}');
            define('DB_CHARSET', 'utf8mb4');
            define('WP_HOME', '{self.url}');
            define('WP_SITEURL', '{self.url}');
            // No internet here: only the site itself and localhost (notifier) are reachable.
            define('WP_HTTP_BLOCK_EXTERNAL', true);
            define('DISABLE_WP_CRON', true);  // the tests run wp-cron.php themselves
            define('AUTOMATIC_UPDATER_DISABLED', true);
            define('WP_ENVIRONMENT_TYPE', 'local');  // application passwords over plain http
            define('WP_DEBUG', true);
            define('WP_DEBUG_LOG', '{self.root.parent / "wp-debug.log"}');
            define('WP_DEBUG_DISPLAY', false);
            $table_prefix = 'wp_';
            """)
            + salts
            + "if (!defined('ABSPATH')) define('ABSPATH', __DIR__ . '/');\n"
            + "require_once ABSPATH . 'wp-settings.php';\n"
        )

    # ---- driving it ----------------------------------------------------------------------------

    def php(self, code: str, **values) -> object:
        """Run PHP inside WordPress as the admin (what WP-CLI does); `values` arrive as $in,
        whatever the PHP code echoes as JSON comes back."""
        script = self.root.parent / f"run-{secrets.token_hex(4)}.php"
        script.write_text(
            "<?php\n"
            f"$_SERVER['HTTP_HOST'] = '127.0.0.1:{self.port}'; $_SERVER['REQUEST_URI'] = '/';\n"
            f"$in = json_decode(base64_decode('{_b64(values)}'), true);\n"
            + ("" if code is INSTALL else f"require '{self.root}/wp-load.php';\n"
               "require_once ABSPATH . 'wp-admin/includes/admin.php';\nwp_set_current_user(1);\n")
            + code
        )  # fmt: skip
        done = subprocess.run(
            ["php", "-d", "display_errors=stderr", str(script)],
            cwd=self.root, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        script.unlink()
        if done.returncode != 0:
            raise AssertionError(f"PHP failed ({done.returncode}):\n{done.stderr}\n{done.stdout}")
        return json.loads(done.stdout) if done.stdout.strip() else None

    def rest(self, method: str, path: str, body: dict | None = None) -> dict:
        """A REST request as the block editor makes it (here authenticated with an
        application password instead of the editor's cookie and nonce)."""
        auth = base64.b64encode(f"admin:{self.app_password}".encode()).decode()
        answer = requests.request(
            method, f"{self.url}/?rest_route={path}", json=body, timeout=30,
            headers={"Authorization": f"Basic {auth}"},
        )  # fmt: skip
        if answer.status_code >= 300:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()

    def configure_plugin(self, notifier_url: str, secret: str, bell: bool = False) -> None:
        """What an admin types into Settings → Notifier."""
        self.php(
            "update_option('notifier_url', $in['url']); update_option('notifier_secret', "
            "$in['secret']); update_option('notifier_bell', $in['bell']);"
            "delete_option('notifier_last_error');",
            url=notifier_url, secret=secret, bell=bell,
        )  # fmt: skip

    def option(self, name: str) -> object:
        return self.php("echo json_encode(get_option($in['name']));", name=name)

    def run_cron(self) -> None:
        """What a visit (or the system cron of a site with DISABLE_WP_CRON) does."""
        requests.get(f"{self.url}/wp-cron.php", timeout=30)


def _b64(values: dict) -> str:
    return base64.b64encode(json.dumps(values).encode()).decode()


ROUTER = """<?php
// PHP's built-in server: real files as they are, everything else through WordPress, so that
// pretty permalinks (/%postname%/) work as under Apache's rewrite rules.
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
if ($path !== '/' && is_file(__DIR__ . $path)) {
    return false;
}
$_SERVER['SCRIPT_NAME'] = '/index.php';
require __DIR__ . '/index.php';
"""

INSTALL = """
define('WP_INSTALLING', true);
require __DIR__ . '/site/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
require_once ABSPATH . 'wp-admin/includes/plugin.php';
wp_install('Aze.Media', 'admin', 'admin@aze.media', true, '', 'admin-password-123');
update_option('permalink_structure', '/%postname%/');
update_option('timezone_string', 'Asia/Baku');
flush_rewrite_rules();
wp_set_current_user(1);
$terms = [];
foreach ($in['categories'] as $name) {
    $made = wp_insert_term($name, 'category');
    if (is_wp_error($made)) { fwrite(STDERR, $made->get_error_message()); exit(1); }
    $terms[$name] = $made['term_id'];
}
$activated = activate_plugin('notifier/notifier.php');
if (is_wp_error($activated)) { fwrite(STDERR, $activated->get_error_message()); exit(1); }
[$password] = WP_Application_Passwords::create_new_application_password(1, ['name' => 'tests']);
echo json_encode(['terms' => $terms, 'app_password' => $password]);
"""
