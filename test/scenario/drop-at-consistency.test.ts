import { dropoutMatrix } from './matrix.js';

dropoutMatrix('consistency');
