import { dropoutMatrix } from './matrix.js';

dropoutMatrix('masked');
