// Accounts in the portal: a wrong password is refused, an administrator creates accounts
// (errors next to the fields, a taken login next to the login), changes levels (the last
// administrator is protected), toggles a setting and disables an account that then cannot log
// in; a non-administrator neither sees nor opens the administration; the profile is saved and
// stays saved; the password change says what is wrong next to the field and then works;
// the scheduling form is used with the keyboard alone, and a topic that looks like a script
// is shown as text.
import { ADMIN_PASSWORD, adminToken, apiCall, assert, logIn, openBrowser, scenario, screenshot, step } from './lib.mjs';

/** The error text inside the same .field as the control with `id`; checks the ARIA wiring. */
async function errorNextTo(page, id) {
  const error = page.locator(`.field:has(#${id}) > .field-error`).first();
  await error.waitFor();
  const describedBy = (await page.locator(`#${id}`).getAttribute('aria-describedby')) ?? '';
  assert.ok(describedBy.split(' ').includes(`${id}-error`), `#${id} is described by its error (${describedBy})`);
  assert.equal(await page.locator(`#${id}`).getAttribute('aria-invalid'), 'true');
  return (await error.textContent()).trim();
}

scenario('accounts, profile and administration in the portal', async () => {
  const token = await adminToken();
  const admin = await openBrowser('admin');
  const page = admin.page;
  const dialogs = [];
  page.on('dialog', async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });

  await step('a wrong password is refused with a message, and nobody is logged in', async () => {
    await page.goto('/login');
    await page.getByLabel('Login name').fill('admin');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: /login name or the password is wrong/i }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Log out' }).count(), 0);
    await screenshot(page, '01-login-wrong-password');
  });

  await step('the administrator logs in and finds the administration', async () => {
    await logIn(page, 'admin', ADMIN_PASSWORD);
    await page.getByRole('link', { name: 'Administration' }).click();
    await page.getByRole('heading', { name: 'Administration' }).waitFor();
    await page.locator('table.accounts tr[data-login="admin"]').waitFor();
    await screenshot(page, '02-admin');
  });

  await step('creating an account checks the fields next to them', async () => {
    await page.getByRole('button', { name: 'Create account' }).click();
    assert.match(await errorNextTo(page, 'new-login'), /2 to 64 characters/);
    assert.equal(await errorNextTo(page, 'new-name'), 'Enter a name.');
    assert.equal(await errorNextTo(page, 'new-email'), 'Enter an e-mail address.');
    assert.match(await errorNextTo(page, 'new-password'), /at least 8 characters/);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'new-login');
  });

  await step('the administrator creates an account', async () => {
    await page.getByLabel('Login name').fill('grace');
    await page.getByLabel('Display name').fill('Grace Hopper');
    await page.getByLabel('E-mail address').fill('grace@example.org');
    await page.getByLabel('Level', { exact: true }).selectOption('audience');
    await page.getByLabel('Initial password').fill('grace-first-secret');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByText('Account “grace” created.').waitFor();
    const row = page.locator('table.accounts tr[data-login="grace"]');
    await row.waitFor();
    assert.match(await row.textContent(), /Grace Hopper.*grace@example\.org/);
    assert.equal(await page.getByLabel('Login name').inputValue(), '', 'the form is emptied');
  });

  await step('a taken login name is refused next to the login field', async () => {
    await page.getByLabel('Login name').fill('grace');
    await page.getByLabel('Display name').fill('Another Grace');
    await page.getByLabel('E-mail address').fill('other@example.org');
    await page.getByLabel('Initial password').fill('another-secret-1');
    await page.getByRole('button', { name: 'Create account' }).click();
    assert.equal(await errorNextTo(page, 'new-login'), 'The login name “grace” is taken; choose another.');
    await screenshot(page, '03-admin-login-taken');
  });

  await step('the administrator changes the level of the account', async () => {
    await page.getByLabel('Level of grace').selectOption('moderator');
    await page.getByText('grace is now Moderator.').waitFor();
    const users = await apiCall('GET', '/users', undefined, token);
    assert.equal(users.body.find((u) => u.login === 'grace').level, 'moderator');
  });

  await step('the last administrator cannot step down, and is told why in the row', async () => {
    await page.getByLabel('Level of admin').selectOption('audience');
    const error = page.locator('table.accounts tr[data-login="admin"] .field-error');
    await error.waitFor();
    assert.match(await error.textContent(), /last enabled administrator/);
    // The list was read again: the level is what the server kept.
    await page.waitForFunction(() => document.querySelector('select[aria-label="Level of admin"]')?.value === 'admin');
    await screenshot(page, '04-admin-last-administrator');
  });

  await step('the scheduling setting is saved', async () => {
    const box = page.getByLabel('Accounts of level Audience may schedule conferences');
    assert.equal(await box.isChecked(), true);
    await box.uncheck();
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.locator('form[aria-labelledby="settings-title"] .notice', { hasText: 'Saved.' }).waitFor();
    assert.equal((await apiCall('GET', '/settings', undefined, token)).body.audienceMaySchedule, false);
    await box.check();
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.waitForFunction(async () => (await (await fetch('/api/v1/settings')).json()).audienceMaySchedule === true);
  });

  await step('local password login can be kept for administrators', async () => {
    const box = page.getByLabel('Only administrators may log in with a Conclave password');
    assert.equal(await box.isChecked(), false);
    await box.check();
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.waitForFunction(async () => (await (await fetch('/api/v1/settings')).json()).localLoginAdminsOnly === true);
    // The other setting stayed as it was.
    assert.equal((await apiCall('GET', '/settings', undefined, token)).body.audienceMaySchedule, true);
    await box.uncheck();
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.waitForFunction(async () => (await (await fetch('/api/v1/settings')).json()).localLoginAdminsOnly === false);
  });

  const graceBrowser = await openBrowser('grace');
  const grace = graceBrowser.page;
  grace.on('dialog', async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });

  await step('someone who is not an administrator sees no administration and is told so at /admin', async () => {
    await logIn(grace, 'grace', 'grace-first-secret');
    assert.equal(await grace.getByRole('link', { name: 'Administration' }).count(), 0);
    await grace.goto('/admin');
    await grace.getByText('Only administrators manage accounts.').waitFor();
    assert.equal(await grace.locator('table.accounts').count(), 0);
    await screenshot(grace, '05-admin-refused');
  });

  await step('the profile is saved ("Saved") and stays after a reload', async () => {
    await grace.getByRole('link', { name: 'Grace Hopper' }).click();
    await grace.getByRole('heading', { name: 'Profile' }).waitFor();
    await grace.getByLabel('Display name').fill('Grace B. Hopper');
    await grace.getByLabel('E-mail address').fill('grace.hopper@example.org');
    await grace.getByLabel('Time zone').selectOption('America/New_York');
    await grace.getByRole('button', { name: 'Save', exact: true }).click();
    await grace.getByText('Saved. A notice went to your old and your new e-mail address.').waitFor();
    await grace.getByRole('link', { name: 'Grace B. Hopper' }).waitFor();
    await screenshot(grace, '06-profile-saved');
    await grace.reload();
    await grace.getByRole('heading', { name: 'Profile' }).waitFor();
    assert.equal(await grace.getByLabel('Display name').inputValue(), 'Grace B. Hopper');
    assert.equal(await grace.getByLabel('E-mail address').inputValue(), 'grace.hopper@example.org');
    assert.equal(await grace.getByLabel('Time zone').inputValue(), 'America/New_York');
  });

  await step('the password change puts each problem next to its field', async () => {
    await grace.getByLabel('Current password').fill('grace-wrong-secret');
    await grace.getByLabel('New password', { exact: true }).fill('grace-second-secret');
    await grace.getByLabel('New password again').fill('grace-second-secret');
    await grace.getByRole('button', { name: 'Change password' }).click();
    assert.equal(await errorNextTo(grace, 'currentPassword'), 'The current password is wrong.');
    await grace.getByLabel('Current password').fill('grace-first-secret');
    await grace.getByLabel('New password again').fill('grace-second-secreT');
    await grace.getByRole('button', { name: 'Change password' }).click();
    assert.match(await errorNextTo(grace, 'repeatPassword'), /differ/);
    assert.equal(await grace.locator('#currentPassword-error').count(), 0, 'the old error is gone');
    await screenshot(grace, '07-password-errors');
  });

  await step('the password change works: the new password logs in, the old one does not', async () => {
    await grace.getByLabel('New password again').fill('grace-second-secret');
    await grace.getByRole('button', { name: 'Change password' }).click();
    await grace.getByText('Password changed.', { exact: false }).waitFor();
    // A logout the server never hears must not look like one: the session cookie would live on.
    await grace.route('**/api/v1/auth/logout', (route) => route.abort('internetdisconnected'));
    await grace.getByRole('button', { name: 'Log out' }).click();
    await grace.getByRole('alert').filter({ hasText: 'Logging out failed, so you are still logged in' }).waitFor();
    assert.equal(await grace.getByRole('button', { name: 'Log out' }).count(), 1);
    await grace.unroute('**/api/v1/auth/logout');
    await grace.getByRole('button', { name: 'Log out' }).click();
    await grace.getByRole('heading', { name: 'Log in to Conclave' }).waitFor();
    const old = await apiCall('POST', '/auth/login', { login: 'grace', password: 'grace-first-secret' });
    assert.equal(old.status, 403);
    await logIn(grace, 'grace', 'grace-second-secret');
  });

  await step('keyboard only: tab through the scheduling form and submit it; a script-like topic stays text', async () => {
    const topic = '<script>alert(1)</script>';
    await grace.goto('/schedule');
    await grace.getByLabel('Topic', { exact: true }).waitFor();
    // From the top of the page, Tab until the topic has focus.
    await grace.evaluate(() => (document.activeElement instanceof HTMLElement ? document.activeElement.blur() : undefined));
    const visited = [];
    const focused = () =>
      grace.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return '';
        return el.id || `${el.tagName.toLowerCase()}:${(el.textContent ?? '').trim()}`;
      });
    for (let i = 0; i < 40 && (await focused()) !== 'topic'; i++) {
      await grace.keyboard.press('Tab');
      visited.push(await focused());
    }
    assert.equal(await focused(), 'topic', `Tab reaches the topic (${visited.join(' → ')})`);
    await grace.keyboard.type(topic);
    // On through every control to the submit button.
    visited.length = 0;
    for (let i = 0; i < 60 && (await focused()) !== 'button:Schedule'; i++) {
      await grace.keyboard.press('Tab');
      visited.push(await focused());
    }
    assert.equal(await focused(), 'button:Schedule', `Tab reaches the Schedule button (${visited.join(' → ')})`);
    for (const id of ['date', 'start', 'end', 'timeZone', 'recurrence', 'meetingId', 'meetingPassword', 'maxParticipants', 'allowJoinWithoutOwner', 'audioOnly', 'invitees']) {
      assert.ok(visited.includes(id), `#${id} is reached with Tab (${[...new Set(visited)].join(' → ')})`);
    }
    await grace.keyboard.press('Enter');
    await grace.waitForURL(/\/conferences\/[^/]+$/);
    assert.equal((await grace.locator('h1.topic').textContent()).trim(), topic);
    await grace.getByRole('link', { name: 'My conferences' }).click();
    const cell = grace.locator('table.conference-log td[data-label="Topic"]', { hasText: topic });
    await cell.waitFor();
    assert.equal((await cell.textContent()).trim(), topic);
    // The text did not become an element.
    assert.equal(await grace.locator('#app script').count(), 0);
    await screenshot(grace, '08-log-script-topic');
  });

  await step("an administrator may list everyone's conferences, with their owners", async () => {
    await page.getByRole('link', { name: 'My conferences' }).click();
    await page.getByText('You have no conferences scheduled.').waitFor();
    await page.getByLabel('Show everyone’s conferences').check();
    await page.getByRole('heading', { name: 'All conferences' }).waitFor();
    const row = page.locator('table.conference-log tbody tr', { hasText: '<script>alert(1)</script>' });
    await row.waitFor();
    assert.equal((await row.locator('td[data-label="Owner"]').textContent()).trim(), 'Grace B. Hopper');
    await screenshot(page, '09-admin-all-conferences');
    await page.getByRole('link', { name: 'Administration' }).click();
    await page.locator('table.accounts tr[data-login="grace"]').waitFor();
  });

  await step('the administrator disables the account; it can no longer log in', async () => {
    await page.getByLabel('grace disabled').check();
    await page.getByText('grace is disabled and can no longer log in.').waitFor();
    // Her session ended: the next page she opens in the portal asks her to log in, says why,
    // and keeps where she was going; logging in is refused.
    await grace.getByRole('link', { name: 'Archive' }).click();
    await grace.getByRole('heading', { name: 'Log in to Conclave' }).waitFor();
    await grace.getByRole('status').filter({ hasText: 'Your login has ended' }).waitFor();
    assert.match(grace.url(), /\/login\?next=%2Farchive$/);
    await grace.getByLabel('Login name').fill('grace');
    await grace.getByLabel('Password').fill('grace-second-secret');
    await grace.getByRole('button', { name: 'Log in' }).click();
    await grace.getByRole('alert').filter({ hasText: /disabled/ }).waitFor();
    assert.equal(await grace.getByRole('button', { name: 'Log out' }).count(), 0);
    await screenshot(grace, '10-disabled-login');
    await screenshot(page, '11-admin-disabled');
  });

  await step('on a phone the accounts table becomes labelled cards', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const row = page.locator('table.accounts tr[data-login="grace"]');
    assert.equal(await page.locator('table.accounts thead').isVisible(), false);
    assert.equal(await row.locator('td[data-label="Level"] select').isVisible(), true);
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1), false, 'no sideways scrolling');
    await screenshot(page, '12-phone-admin');
    await grace.setViewportSize({ width: 390, height: 844 });
    await logIn(grace, 'admin', ADMIN_PASSWORD);
    await grace.goto('/profile');
    await grace.getByLabel('Display name').waitFor();
    await screenshot(grace, '13-phone-profile');
  });

  await step('no script ran from text, and no script errors on the way', async () => {
    assert.deepEqual(dialogs, []);
    for (const browser of [admin, graceBrowser]) {
      assert.deepEqual(
        browser.problems.filter((p) => p.startsWith('page error')),
        [],
        browser.name,
      );
    }
  });
});
