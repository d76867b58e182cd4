import { dropoutMatrix } from './matrix.js';

// Active mode only: a member of U1 that never signs the view costs a second view attempt without it.
dropoutMatrix('view');
