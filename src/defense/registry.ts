/**
 * The registered defenses, in the order the comparison table lists them. Importing this
 * module registers them all; adding a defense means adding its module here (and its CLI
 * file and test).
 */
import './prune_defenses.js';
import './nc.js';
import './anp.js';
import './clp.js';
import './rnp.js';
import '../detect/strip_defense.js';
import './fst.js';
import './unlearn.js';
import './sau.js';

export { registeredDefenses, getDefense, registerDefense } from './interface.js';
