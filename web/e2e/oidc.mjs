// Logging in with the company account (OpenID Connect) in Chromium, against a real provider
// (npm oidc-provider, started by tests/portal.rs; its user alice is in `video-moderators`):
// the login page offers "Log in with Test provider" beside the password form; the person logs
// in on the provider's page and lands on the page they wanted, as a moderator; a login answer
// that does not belong to this browser lands on the login page with a sentence; logout ends the
// Conclave session.
import { apiCall, assert, openBrowser, scenario, screenshot, step } from './lib.mjs';

scenario('log in with the company account (OpenID Connect)', async () => {
  const { page } = await openBrowser('alice');

  await step('the login page offers the provider beside the password form', async () => {
    await page.goto('/schedule');
    await page.waitForURL(/\/login\?next=%2Fschedule$/);
    await page.getByRole('link', { name: 'Log in with Test provider' }).waitFor();
    await page.getByLabel('Password').waitFor();
    await screenshot(page, '01-login-page');
  });

  await step('alice logs in at the provider and lands where she wanted, as a moderator', async () => {
    await page.getByRole('link', { name: 'Log in with Test provider' }).click();
    await page.getByRole('heading', { name: 'Test provider' }).waitFor();
    await screenshot(page, '02-provider');
    await page.getByLabel('Username').fill('alice');
    await page.getByLabel('Password').fill('alice-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((url) => url.pathname === '/schedule');
    await page.getByRole('button', { name: 'Log out' }).waitFor();
    const me = await page.evaluate(async () => (await fetch('/api/v1/me')).json());
    assert.equal(me.login, 'alice');
    assert.equal(me.level, 'moderator');
    assert.equal(me.source, 'oidc');
    assert.equal(me.displayName, 'Alice Example');
    await screenshot(page, '03-logged-in');
  });

  await step('logout ends the Conclave session', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/login/);
    const me = await page.evaluate(async () => (await fetch('/api/v1/me')).status);
    assert.equal(me, 401);
  });

  await step('an answer that does not belong to this browser shows why on the login page', async () => {
    await page.goto('/api/v1/auth/oidc/callback?code=stolen&state=not-this-browsers');
    await page.waitForURL(/\/login\?error=/);
    await page.getByRole('alert').filter({ hasText: /unknown or was already used/ }).waitFor();
    assert.equal((await apiCall('GET', '/auth/methods')).body.oidc.name, 'Test provider');
    await screenshot(page, '04-refused');
  });
});
