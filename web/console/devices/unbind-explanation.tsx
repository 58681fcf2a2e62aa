/** What unbinding does, in the words the dialogs use. */
export function UnbindExplanation() {
  return (
    <ul className="explain">
      <li>The device leaves your account, and every share of it ends at once.</li>
      <li>Recordings stay on the device (its disk or memory card); nothing on it is erased.</li>
      <li>Anyone holding the verification code on its label can bind it again.</li>
    </ul>
  );
}
