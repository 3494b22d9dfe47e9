<?php
/**
 * Plugin Name:       notifier
 * Description:       Tells notifier the moment a post is published, so readers of its categories get the email and browser notification at once instead of at the next feed poll. Can also add notifier's bell to single posts.
 * Version:           1.0.0
 * Requires at least: 5.6
 * Requires PHP:      7.4
 * License:           MIT
 *
 * Install: copy this file to wp-content/plugins/notifier/notifier.php and activate it, then
 * fill in Settings → Notifier. Or copy it to wp-content/mu-plugins/notifier.php (always on)
 * and define the settings in wp-config.php:
 *
 *     define('NOTIFIER_URL', 'https://notify.example.com');  // notifier's PUBLIC_URL
 *     define('NOTIFIER_SECRET', '...');                       // notifier's WEBHOOK_SECRET
 *     define('NOTIFIER_BELL', true);                          // optional: the bell on posts
 *
 * Constants win over the settings screen. Nothing here ever blocks or breaks publishing: the
 * call to notifier is made after the editor's page has been answered where the server allows
 * (PHP-FPM, LiteSpeed), always with a short timeout, and a failure is only logged and shown
 * on the settings screen; notifier's feed poll then announces the post a few minutes later.
 */

defined('ABSPATH') || exit;

const NOTIFIER_TIMEOUT_SECONDS = 3;

/** A setting from wp-config.php (NOTIFIER_URL, ...) or else from Settings → Notifier. */
function notifier_setting($name)
{
    $constant = 'NOTIFIER_' . strtoupper($name);
    return defined($constant) ? constant($constant) : get_option('notifier_' . $name, '');
}

/**
 * wp_after_insert_post fires once the post, its categories and its meta are saved, on every
 * path: block editor (REST), classic editor, Quick Edit, scheduled publishing, XML-RPC,
 * wp_insert_post(). transition_post_status fires before the block editor saves the
 * categories, so a hook there announces every block-editor post as "Uncategorized".
 */
add_action('wp_after_insert_post', 'notifier_after_insert_post', 10, 4);

function notifier_after_insert_post($post_id, $post, $update, $post_before)
{
    if ($post->post_type !== 'post' || $post->post_status !== 'publish') {
        return;
    }
    if (!empty($post->post_password) || wp_is_post_revision($post) || wp_is_post_autosave($post)) {
        return;
    }
    $categories = notifier_post_categories($post_id);
    $fingerprint = implode(',', wp_list_pluck($categories, 'id'));
    $announced = get_post_meta($post_id, '_notifier_announced_at', true);
    if (!$announced && $post_before && $post_before->post_status === 'publish') {
        return;  // published before this plugin: an edit is not news
    }
    if ($announced) {
        // Published before: only a change of categories is news to notifier (it announces
        // the post to readers of added categories within its grace period, never twice).
        if (get_post_meta($post_id, '_notifier_categories', true) === $fingerprint) {
            return;
        }
    }
    update_post_meta($post_id, '_notifier_announced_at', $announced ?: time());
    update_post_meta($post_id, '_notifier_categories', $fingerprint);
    notifier_send_after_response(notifier_payload($post, $categories));
}

/** The post's categories as WordPress identifies them, names decoded ("Oil &amp; Gas"). */
function notifier_post_categories($post_id)
{
    $terms = get_the_terms($post_id, 'category');
    if (!is_array($terms)) {
        return [];
    }
    $categories = [];
    foreach ($terms as $term) {
        $categories[] = [
            'id' => (int) $term->term_id,
            'slug' => urldecode($term->slug),
            'name' => html_entity_decode($term->name, ENT_QUOTES | ENT_HTML5, 'UTF-8'),
        ];
    }
    return $categories;
}

function notifier_payload($post, $categories)
{
    $text = function ($html) {
        return html_entity_decode(wp_strip_all_tags($html), ENT_QUOTES | ENT_HTML5, 'UTF-8');
    };
    return [
        'guid' => get_the_guid($post),
        'url' => get_permalink($post),
        'title' => $text(get_the_title($post)),
        'summary' => $text(get_the_excerpt($post)),
        'categories' => $categories,
        'image' => get_the_post_thumbnail_url($post, 'large') ?: null,
        'published_at' => get_post_time('c', true, $post),
    ];
}

/** Queue the call for the end of the request, after the editor has the answer. */
function notifier_send_after_response($payload)
{
    static $queued = [];
    if (!$queued) {
        add_action('shutdown', function () use (&$queued) {
            if (function_exists('fastcgi_finish_request')) {
                fastcgi_finish_request();
            } elseif (function_exists('litespeed_finish_request')) {
                litespeed_finish_request();
            }
            foreach ($queued as $payload) {
                notifier_send($payload);
            }
            $queued = [];
        });
    }
    $queued[$payload['guid']] = $payload;  // a post saved twice in one request: its last state
}

function notifier_send($payload)
{
    $url = rtrim((string) notifier_setting('url'), '/');
    $secret = (string) notifier_setting('secret');
    if ($url === '' || $secret === '') {
        notifier_remember_error('Notifier URL or secret is not set; the feed poll will announce the post.');
        return;
    }
    $body = wp_json_encode($payload, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES);
    $response = wp_remote_post($url . '/api/v1/articles', [
        'timeout' => NOTIFIER_TIMEOUT_SECONDS,
        'redirection' => 0,
        'body' => $body,
        'headers' => [
            'Content-Type' => 'application/json',
            'X-Notifier-Signature' => 'sha256=' . hash_hmac('sha256', $body, $secret),
        ],
    ]);
    $status = is_wp_error($response) ? 0 : (int) wp_remote_retrieve_response_code($response);
    if ($status === 200 || $status === 202) {
        update_option('notifier_last_ok', time(), false);
        return;
    }
    $why = is_wp_error($response)
        ? $response->get_error_message()
        : 'HTTP ' . $status . ': ' . substr(wp_remote_retrieve_body($response), 0, 300);
    notifier_remember_error(sprintf('"%s" was not announced (%s); the feed poll will announce it.',
        $payload['title'], $why));
}

function notifier_remember_error($message)
{
    error_log('notifier: ' . $message);
    update_option('notifier_last_error', gmdate('Y-m-d H:i:s') . ' UTC: ' . $message, false);
}

/* ---- The bell on single posts (optional) ------------------------------------------------ */

/** The one-line service worker the bell registers, served from the site's own origin. */
add_action('init', function () {
    if (!notifier_setting('bell') || !notifier_setting('url')) {
        return;
    }
    $path = strtok($_SERVER['REQUEST_URI'] ?? '', '?');
    if ($path !== '/notifier-sw.js') {
        return;
    }
    $origin = rtrim((string) notifier_setting('url'), '/');
    header('Content-Type: text/javascript; charset=utf-8');
    header('Cache-Control: no-cache');
    echo 'self.NOTIFIER_ORIGIN = ' . wp_json_encode($origin, JSON_UNESCAPED_SLASHES) . '; importScripts(self.NOTIFIER_ORIGIN + "/sw.js");';
    exit;
});

/** The bell after the post's content, with the post's own category slugs pre-selected. */
add_filter('the_content', function ($content) {
    if (!notifier_setting('bell') || !notifier_setting('url') || !is_singular('post')
        || !in_the_loop() || !is_main_query()) {
        return $content;
    }
    $slugs = implode(',', wp_list_pluck(notifier_post_categories(get_the_ID()), 'slug'));
    $origin = rtrim((string) notifier_setting('url'), '/');
    return $content
        . '<div id="notifier-bell" data-categories="' . esc_attr($slugs) . '"></div>'
        . '<script src="' . esc_url($origin . '/widget.js') . '" defer></script>';
});

/* ---- Settings → Notifier ----------------------------------------------------------------- */

add_action('admin_init', function () {
    register_setting('notifier', 'notifier_url', ['type' => 'string', 'sanitize_callback' => 'esc_url_raw']);
    register_setting('notifier', 'notifier_secret', ['type' => 'string', 'sanitize_callback' => 'trim']);
    register_setting('notifier', 'notifier_bell', ['type' => 'boolean', 'sanitize_callback' => 'rest_sanitize_boolean']);
});

add_action('admin_menu', function () {
    add_options_page('Notifier', 'Notifier', 'manage_options', 'notifier', 'notifier_settings_page');
});

function notifier_settings_page()
{
    $field = function ($name, $label, $type, $help) {
        $constant = 'NOTIFIER_' . strtoupper($name);
        $value = notifier_setting($name);
        $locked = defined($constant) ? ' disabled' : '';
        echo '<tr><th scope="row"><label for="notifier_' . esc_attr($name) . '">' . esc_html($label) . '</label></th><td>';
        if ($type === 'checkbox') {
            echo '<input type="checkbox" id="notifier_' . esc_attr($name) . '" name="notifier_' . esc_attr($name) . '" value="1"' . checked((bool) $value, true, false) . $locked . '>';
        } else {
            echo '<input class="regular-text" type="' . esc_attr($type) . '" id="notifier_' . esc_attr($name) . '" name="notifier_' . esc_attr($name) . '" value="' . esc_attr($value) . '"' . $locked . '>';
        }
        echo '<p class="description">' . esc_html($help) . ($locked ? ' ' . esc_html(sprintf('Set by %s in wp-config.php.', $constant)) : '') . '</p></td></tr>';
    };
    echo '<div class="wrap"><h1>Notifier</h1>';
    $error = get_option('notifier_last_error');
    $ok = (int) get_option('notifier_last_ok');
    if ($error && (!$ok || strtotime(substr($error, 0, 19) . ' UTC') > $ok)) {
        echo '<div class="notice notice-error"><p>' . esc_html('Last problem: ' . $error) . '</p></div>';
    } elseif ($ok) {
        echo '<div class="notice notice-success"><p>' . esc_html('Last post announced ' . human_time_diff($ok) . ' ago.') . '</p></div>';
    }
    echo '<form method="post" action="options.php">';
    settings_fields('notifier');
    echo '<table class="form-table" role="presentation">';
    $field('url', 'Notifier address', 'url', "notifier's PUBLIC_URL, e.g. https://notify.example.com");
    $field('secret', 'Webhook secret', 'password', "The same value as notifier's WEBHOOK_SECRET.");
    $field('bell', 'Bell on posts', 'checkbox', "Add notifier's bell after each post, with the post's categories ticked, and serve /notifier-sw.js.");
    echo '</table>';
    submit_button();
    echo '</form></div>';
}
