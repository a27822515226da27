// Who is logged in, shared by every page.
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Account } from './api';

export interface Session {
  /** The account, or null when nobody is logged in (guests may still join meetings). */
  me: Account | null;
  /** Replaces the account after login, logout or a profile change. */
  setMe: (me: Account | null) => void;
}

export const SessionContext = createContext<Session>({ me: null, setMe: () => {} });

export const useSession = () => useContext(SessionContext);

/** Whether the account may administer accounts. */
export const isAdmin = (me: Account | null) => me?.level === 'admin';
